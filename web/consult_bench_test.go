package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"renkei"
	"renkei/web"
)

// BenchmarkConsultRooms: 20 rooms of 3 participants; in each the driver changes the view 10 times a second and the
// two others move a laser pointer 10 times a second each, for RENKEI_BENCH_SECONDS (default 5). It reports the p95
// time for a change to reach the other participants (target ≤ 100 ms) and the server's CPU use in cores (target ≤ 1),
// with a baseline: the same clients exchanging nothing but the WebSocket's own keep-alive.
//
//	go test ./web -run '^$' -bench ConsultRooms -benchtime 1x
func BenchmarkConsultRooms(b *testing.B) {
	r := newRegion(b)
	ctx := context.Background()
	const rooms, perRoom = 20, 3
	// Members: the clinic's users (the study's own institution, no share needed).
	var logins []string
	for i := range rooms * perRoom {
		login := fmt.Sprintf("bench%02d@kita-clinic", i)
		r.addUser(login, r.clinic, renkei.Physician)
		logins = append(logins, login)
	}
	type member struct {
		c    *client
		conn *websocket.Conn
	}
	var all [][]member
	for k := range rooms {
		owner := r.as(logins[k*perRoom])
		if st := owner.post("/api/consults", map[string]string{"study": r.p1a.studyUID}); st != 201 {
			b.Fatalf("consult: %d %s", st, owner.body)
		}
		var c struct{ ID int64 }
		json.Unmarshal(owner.body, &c)
		room := []member{{c: owner}}
		for j := 1; j < perRoom; j++ {
			if st := owner.post(fmt.Sprintf("/api/consults/%d/invite", c.ID), map[string]string{"login": logins[k*perRoom+j]}); st != 200 {
				b.Fatalf("invite: %d", st)
			}
			room = append(room, member{c: r.as(logins[k*perRoom+j])})
		}
		for j := range room {
			h := http.Header{}
			h.Set("Cookie", web.SessionCookie+"="+room[j].c.cookie)
			h.Set("Origin", r.srv.URL)
			conn, _, err := websocket.Dial(ctx, strings.Replace(r.srv.URL, "http", "ws", 1)+fmt.Sprintf("/api/consults/%d/ws", c.ID),
				&websocket.DialOptions{HTTPHeader: h})
			if err != nil {
				b.Fatal(err)
			}
			conn.SetReadLimit(1 << 20)
			room[j].conn = conn
			defer conn.CloseNow()
		}
		all = append(all, room)
	}
	seconds := 5
	// One reader per connection for the whole run (a cancelled read closes a WebSocket): it notes how long each
	// change took to arrive while recording is on.
	var mu sync.Mutex
	var lat []time.Duration
	recording := false
	for _, room := range all {
		for _, m := range room {
			go func() {
				for {
					_, data, err := m.conn.Read(ctx)
					if err != nil {
						return
					}
					var msg struct {
						Type       string
						State      struct{ Sent int64 }
						Annotation struct{ Sent int64 }
					}
					json.Unmarshal(data, &msg)
					if sent := msg.State.Sent + msg.Annotation.Sent; sent > 0 && (msg.Type == "state" || msg.Type == "pointer") {
						d := time.Since(time.Unix(0, sent))
						mu.Lock()
						if recording {
							lat = append(lat, d)
						}
						mu.Unlock()
					}
				}
			}()
		}
	}
	cores := func(f func()) float64 {
		var before, after syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &before)
		t0 := time.Now()
		f()
		wall := time.Since(t0)
		syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
		return cpu.Seconds() / wall.Seconds()
	}
	run := func() {
		rctx, cancel := context.WithTimeout(ctx, time.Duration(seconds)*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for _, room := range all {
			for j, m := range room {
				wg.Add(1)
				go func() { // 10 changes a second
					defer wg.Done()
					tick := time.NewTicker(100 * time.Millisecond)
					defer tick.Stop()
					for i := 0; ; i++ {
						select {
						case <-rctx.Done():
							return
						case <-tick.C:
						}
						now := time.Now().UnixNano()
						var msg string
						if j == 0 {
							msg = fmt.Sprintf(`{"type":"state","state":{"sent":%d,"index":%d,"wc":40,"ww":400,"zoom":1}}`, now, i%60)
						} else {
							msg = fmt.Sprintf(`{"type":"pointer","annotation":{"sent":%d,"key":"x/1","a":{"x":%d,"y":10}}}`, now, i%100)
						}
						wctx, done := context.WithTimeout(ctx, time.Second)
						err := m.conn.Write(wctx, websocket.MessageText, []byte(msg))
						done()
						if err != nil {
							return
						}
					}
				}()
			}
		}
		wg.Wait()
		time.Sleep(200 * time.Millisecond) // the last changes arrive
	}
	for b.Loop() {
		idle := cores(func() { time.Sleep(time.Duration(seconds) * time.Second) })
		mu.Lock()
		recording = true
		mu.Unlock()
		busy := cores(run)
		mu.Lock()
		recording = false
		got := slices.Clone(lat)
		mu.Unlock()
		slices.Sort(got)
		if len(got) == 0 {
			b.Fatal("no change arrived")
		}
		b.ReportMetric(float64(got[len(got)*95/100].Microseconds())/1000, "p95-ms")
		b.ReportMetric(float64(len(got))/float64(seconds), "deliveries/s")
		b.ReportMetric(busy, "cores")
		b.ReportMetric(idle, "cores-idle-baseline")
	}
}

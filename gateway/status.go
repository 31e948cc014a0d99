package gateway

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"strings"
	"time"
)

// statusHandler serves the local status page (GET /, in Japanese with English beside it, refreshing itself) and
// GET /status.json. It is meant for the hospital's own network: it shows no patient data, only UIDs and counts.
func (g *Gateway) statusHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(g.Status())
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		statusPage.Execute(w, view(g.Status(), time.Now()))
	})
	return mux
}

// statusView is a status in the words the page and `renkei gateway status` print.
type statusView struct {
	Status
	Health     string // ok, warn, bad
	Headline   string // 日本語
	HeadlineEn string
	Backlog    string
	OldestAge  string
	Free       string
	Parked     []parkedView
}

// parkedView is one study's parked instances in words.
type parkedView struct {
	ParkedStudy
	Why, WhyEn string
	SinceText  string
}

func view(st Status, now time.Time) statusView {
	v := statusView{Status: st, Health: "ok", Backlog: fmt.Sprintf("%d 件 (%d 検査, %s)", st.Queue.Instances, st.Queue.Studies, bytesText(st.Queue.Bytes)),
		Free: bytesText(st.DiskFree)}
	if !st.Queue.Oldest.IsZero() {
		v.OldestAge = ageText(now.Sub(st.Queue.Oldest))
	}
	for _, p := range st.Parked.Studies {
		ja, en := ParkedWords(p.Kind)
		v.Parked = append(v.Parked, parkedView{ParkedStudy: p, Why: ja, WhyEn: en, SinceText: p.Since.Local().Format(time.DateTime) + ", " + ageText(now.Sub(p.Since))})
	}
	switch {
	case !st.Running:
		v.Health, v.Headline, v.HeadlineEn = "bad", "ゲートウェイは停止しています", "The gateway is not running: "+st.Stopped
	case st.Connection.State == "refused":
		v.Health, v.Headline, v.HeadlineEn = "bad", "renkei がこのゲートウェイのトークンを拒否しました。管理者に新しいトークンを依頼してください", "renkei refused the gateway's token"
	case st.DiskFree < st.Reserve:
		v.Health, v.Headline, v.HeadlineEn = "bad", "ディスクの空きが足りません。モダリティからの受信を止めています", "The spool's disk is full: the modalities are told to try later"
	case st.Connection.State == "unreachable":
		v.Health, v.Headline, v.HeadlineEn = "warn", "renkei に接続できません。画像はこのPCに保管され、回線が戻ると自動で送られます",
			"renkei cannot be reached; images are kept here and sent when the line is back"
	case st.Parked.Instances > 0:
		v.Health = "warn"
		v.Headline = fmt.Sprintf("renkei が受け取らない画像 %d 件の送信を止めています(下の一覧)。原因を直してから renkei gateway retry で送り直すか、discard で削除してください",
			st.Parked.Instances)
		v.HeadlineEn = fmt.Sprintf("%d image(s) renkei refused for good are parked (see below): fix the cause, then renkei gateway retry; or discard them", st.Parked.Instances)
	case len(st.Failures) > 0:
		v.Health, v.Headline, v.HeadlineEn = "warn", "送れない画像があります(下の一覧)", "Some images could not be sent (see below)"
	case st.Inbound != nil && st.Inbound.LastError != "":
		v.Health, v.Headline, v.HeadlineEn = "warn", "共有された画像を院内PACSへ配信できていません", "Shared images cannot be delivered to the PACS: "+st.Inbound.LastError
	case st.Queue.Instances > 0:
		v.Headline, v.HeadlineEn = "送信中です", "Sending"
	default:
		v.Headline, v.HeadlineEn = "すべて送信済みです", "Everything has been sent"
	}
	return v
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// ageText says how long ago, in Japanese and in English: "3分前 (3 min ago)".
func ageText(d time.Duration) string {
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%d日前 (%d days ago)", int(d.Hours()/24), int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%d時間前 (%d h ago)", int(d.Hours()), int(d.Hours()))
	case d >= time.Minute:
		return fmt.Sprintf("%d分前 (%d min ago)", int(d.Minutes()), int(d.Minutes()))
	}
	return fmt.Sprintf("%d秒前 (%d s ago)", int(d.Seconds()), int(d.Seconds()))
}

// WriteText prints a status for `renkei gateway status`.
func WriteText(w io.Writer, st Status, now time.Time) {
	v := view(st, now)
	fmt.Fprintf(w, "%s\n%s\n\n", v.Headline, v.HeadlineEn)
	fmt.Fprintf(w, "待ち (waiting):        %s\n", v.Backlog)
	if v.OldestAge != "" {
		fmt.Fprintf(w, "最も古い (oldest):     %s, %s\n", v.OldestAge, st.Queue.Oldest.Local().Format(time.DateTime))
	}
	conn := st.Connection.State
	if !st.Connection.Since.IsZero() {
		conn += " since " + st.Connection.Since.Local().Format(time.DateTime)
	}
	fmt.Fprintf(w, "接続 (connection):     %s → %s\n", conn, st.Server)
	if !st.LastSent.IsZero() {
		fmt.Fprintf(w, "最終送信 (last sent):  %s\n", st.LastSent.Local().Format(time.DateTime))
	}
	if st.Connection.LastError != "" && st.Connection.State != "connected" {
		fmt.Fprintf(w, "エラー (error):        %s\n", st.Connection.LastError)
	}
	fmt.Fprintf(w, "受信 (DICOM):          %s at %s\n", st.AE, st.DIMSE)
	fmt.Fprintf(w, "ディスク空き (free):   %s (reserve %s)\n", v.Free, bytesText(st.Reserve))
	if f := st.Fetch; f != nil {
		fmt.Fprintf(w, "過去画像 (fetch):      %d 件 from %s\n", f.Done, f.PACS)
		if f.LastError != "" {
			fmt.Fprintf(w, "  取り寄せエラー (error): %s\n", f.LastError)
		}
	}
	if in := st.Inbound; in != nil {
		fmt.Fprintf(w, "PACSへの配信 (to PACS): %d 件 → %s", in.Delivered, strings.Join(in.Destinations, ", "))
		if !in.LastDelivered.IsZero() {
			fmt.Fprintf(w, " (last %s)", in.LastDelivered.Local().Format(time.DateTime))
		}
		fmt.Fprintln(w)
		if in.LastError != "" {
			fmt.Fprintf(w, "  配信エラー (error): %s\n", in.LastError)
		}
	}
	if st.Parked.Instances > 0 {
		fmt.Fprintf(w, "\n送信を止めた画像 (parked, not sent, kept on disk): %d 件, %d 検査\n", st.Parked.Instances, len(st.Parked.Studies))
		writeParked(w, v.Parked)
		fmt.Fprintf(w, "  → renkei gateway retry --study UID | --all  (送り直す / send again),  renkei gateway discard --study UID  (削除 / delete)\n")
	}
	if len(st.Failures) > 0 {
		fmt.Fprintf(w, "\n送れない画像 (failures):\n")
		for _, f := range st.Failures {
			fmt.Fprintf(w, "  %s  %s  (%d回 attempts, from %s)\n    %s\n", f.At.Local().Format(time.DateTime), f.SOPInstanceUID, f.Attempts, f.CallingAE, f.Error)
		}
	}
}

// writeParked prints parked studies, one paragraph each.
func writeParked(w io.Writer, ps []parkedView) {
	for _, p := range ps {
		fmt.Fprintf(w, "  検査 (study) %s: %d 件 (%s) from %s\n", p.StudyInstanceUID, p.Instances, bytesText(p.Bytes), orDash(p.CallingAE))
		fmt.Fprintf(w, "    停止 (parked since): %s\n", p.SinceText)
		fmt.Fprintf(w, "    理由 (why): %s / %s\n", p.Why, p.WhyEn)
		fmt.Fprintf(w, "    renkei の答え (answer): %s\n", p.Reason)
	}
}

// ParkedText prints the parked instances of a spool for `renkei gateway parked`: by study, then each instance.
func ParkedText(w io.Writer, parked []Entry, now time.Time) {
	if len(parked) == 0 {
		fmt.Fprintln(w, "送信を止めた画像はありません。 No image is parked.")
		return
	}
	ps := parkedStudies(parked)
	fmt.Fprintf(w, "送信を止めた画像 (parked): %d 件, %d 検査. They are kept on disk and not sent.\n\n", ps.Instances, len(ps.Studies))
	v := view(Status{Running: true, Parked: ps}, now)
	for _, p := range v.Parked {
		writeParked(w, []parkedView{p})
		for _, e := range parked {
			if e.StudyInstanceUID == p.StudyInstanceUID {
				fmt.Fprintf(w, "      %s  %s  %d回 refused  %s\n", e.Parked.Local().Format(time.DateTime), e.SOPInstanceUID, e.Refusals, e.LastError)
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "送り直す (send again, once renkei's admin fixed the cause): renkei gateway retry --study UID   (or --all)")
	fmt.Fprintln(w, "削除する (delete them from this gateway):                  renkei gateway discard --study UID")
}

var statusPage = template.Must(template.New("status").Parse(`<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>renkei ゲートウェイ {{.Name}}</title>
<style>
body{font-family:"Noto Sans CJK JP","Hiragino Sans",sans-serif;font-size:18px;margin:1.5em;color:#222;line-height:1.6}
.en{color:#555;font-size:15px}
.banner{padding:.8em 1em;border-radius:8px;font-size:22px;font-weight:bold}
.ok{background:#e6f4ea;border:2px solid #1e7e34}.warn{background:#fff4d6;border:2px solid #b38600}.bad{background:#fde8e8;border:2px solid #c0392b}
table{border-collapse:collapse;margin-top:1em}td,th{padding:.3em .8em;text-align:left;border-bottom:1px solid #ddd;vertical-align:top}
</style></head><body>
<h1>renkei ゲートウェイ <span class="en">gateway</span> {{.Name}}</h1>
<div id="health" class="banner {{.Health}}">{{.Headline}}<div class="en">{{.HeadlineEn}}</div></div>
<table id="summary">
<tr><th>送信待ち <span class="en">waiting</span></th><td id="backlog">{{.Backlog}}</td></tr>
{{if .OldestAge}}<tr><th>最も古い画像 <span class="en">oldest</span></th><td>{{.OldestAge}}</td></tr>{{end}}
<tr><th>renkei への接続 <span class="en">connection</span></th><td id="connection">{{.Connection.State}} ({{.Server}}){{if and .Connection.LastError (ne .Connection.State "connected")}}<div class="en">{{.Connection.LastError}}</div>{{end}}</td></tr>
{{if not .LastSent.IsZero}}<tr><th>最終送信 <span class="en">last sent</span></th><td>{{.LastSent.Format "2006-01-02 15:04:05"}}</td></tr>{{end}}
<tr><th>DICOM 受信 <span class="en">receives as</span></th><td>{{.AE}} ({{.DIMSE}})</td></tr>
<tr><th>ディスク空き <span class="en">free disk</span></th><td>{{.Free}}</td></tr>
{{with .Fetch}}<tr><th>過去画像の取り寄せ <span class="en">earlier studies fetched from</span></th><td id="fetch">{{.PACS}}: {{.Done}} 件{{if .LastError}}<div class="en">{{.LastError}}</div>{{end}}</td></tr>{{end}}
{{with .Inbound}}<tr><th>院内PACSへの配信 <span class="en">shared images delivered to the PACS</span></th><td id="inbound">{{.Delivered}} 件 → {{range .Destinations}}{{.}} {{end}}{{if not .LastDelivered.IsZero}}({{.LastDelivered.Format "2006-01-02 15:04"}}){{end}}{{if .LastError}}<div class="en">{{.LastError}}</div>{{end}}</td></tr>{{end}}
</table>
{{if .Parked}}<h2>送信を止めた画像 <span class="en">parked images: renkei refused them for good; kept here, not sent</span></h2>
<table id="parked"><tr><th>検査 <span class="en">study</span></th><th>件数 <span class="en">images</span></th><th>停止 <span class="en">since</span></th><th>理由 <span class="en">why</span></th></tr>
{{range .Parked}}<tr><td>{{.StudyInstanceUID}}<div class="en">{{.CallingAE}}</div></td><td>{{.Instances}}</td><td>{{.SinceText}}</td><td>{{.Why}}<div class="en">{{.WhyEn}}: {{.Reason}}</div></td></tr>{{end}}
</table>
<p>原因を直してから送り直す <span class="en">send again once the cause is fixed</span>: <code>renkei gateway retry --study UID</code> (<code>--all</code>)<br>
削除する <span class="en">delete from this gateway</span>: <code>renkei gateway discard --study UID</code></p>{{end}}
{{if .Failures}}<h2>送れない画像 <span class="en">images not sent</span></h2>
<table id="failures"><tr><th>時刻 <span class="en">at</span></th><th>送信元 <span class="en">from</span></th><th>回数 <span class="en">tries</span></th><th>理由 <span class="en">reason</span></th></tr>
{{range .Failures}}<tr><td>{{.At.Format "01-02 15:04"}}</td><td>{{.CallingAE}}</td><td>{{.Attempts}}</td><td>{{.Error}}<div class="en">{{.SOPInstanceUID}}</div></td></tr>{{end}}
</table>{{end}}
</body></html>
`))

package codec_test

import (
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei/codec"
)

func bot(offsets ...uint32) []byte {
	var b []byte
	for _, o := range offsets {
		b = binary.LittleEndian.AppendUint32(b, o)
	}
	return b
}

func TestFrames(t *testing.T) {
	soi := func(s string) []byte { return append([]byte{0xFF, 0xD8}, s...) }
	soc := func(s string) []byte { return append([]byte{0xFF, 0x4F, 0xFF, 0x51}, s...) }
	cases := []struct {
		name    string
		items   [][]byte
		eot     []uint64
		eotLen  []uint64
		frames  int
		ts      string
		want    [][]byte
		wantErr error
	}{
		{name: "single frame, one fragment", items: [][]byte{nil, []byte("ab")}, frames: 1, ts: tsRLE,
			want: [][]byte{[]byte("ab")}},
		{name: "single frame, fragments concatenated", items: [][]byte{nil, []byte("ab"), []byte("cd"), []byte("ef")}, frames: 1, ts: tsJ2K,
			want: [][]byte{[]byte("abcdef")}},
		{name: "zero frames means one", items: [][]byte{nil, []byte("ab"), []byte("cd")}, frames: 0, ts: tsRLE,
			want: [][]byte{[]byte("abcd")}},
		{name: "one fragment per frame", items: [][]byte{nil, []byte("ab"), []byte("cd"), []byte("ef")}, frames: 3, ts: tsRLE,
			want: [][]byte{[]byte("ab"), []byte("cd"), []byte("ef")}},
		{name: "basic offset table", items: [][]byte{bot(0, 20), []byte("ab"), []byte("cd"), []byte("ef")}, frames: 2, ts: tsRLE,
			want: [][]byte{[]byte("abcd"), []byte("ef")}},
		{name: "basic offset table, single frame", items: [][]byte{bot(0), []byte("ab"), []byte("cd")}, frames: 1, ts: tsRLE,
			want: [][]byte{[]byte("abcd")}},
		{name: "extended offset table", items: [][]byte{nil, []byte("ab"), []byte("cdef"), []byte("gh")},
			eot: []uint64{0, 10}, eotLen: []uint64{2, 5}, frames: 2, ts: tsRLE,
			want: [][]byte{[]byte("ab"), []byte("cdefg")}},
		{name: "extended offset table without lengths", items: [][]byte{nil, []byte("ab"), []byte("cd")},
			eot: []uint64{0, 10}, frames: 2, ts: tsRLE, want: [][]byte{[]byte("ab"), []byte("cd")}},
		{name: "JPEG split at SOI", items: [][]byte{nil, soi("1"), []byte("2"), soi("3"), soi("4"), []byte("5")}, frames: 3, ts: tsJPEGSV1,
			want: [][]byte{soi("12"), soi("3"), soi("45")}},
		{name: "JPEG 2000 split at SOC", items: [][]byte{nil, soc("1"), []byte("2"), soc("3")}, frames: 2, ts: tsJ2KLossl,
			want: [][]byte{soc("12"), soc("3")}},
		{name: "no items", items: nil, frames: 1, ts: tsRLE, wantErr: codec.ErrCorrupt},
		{name: "no fragments", items: [][]byte{nil}, frames: 1, ts: tsRLE, wantErr: codec.ErrCorrupt},
		{name: "RLE cannot be split", items: [][]byte{nil, []byte("a"), []byte("b"), []byte("c")}, frames: 2, ts: tsRLE, wantErr: codec.ErrCorrupt},
		{name: "JPEG with too few SOI", items: [][]byte{nil, soi("1"), []byte("2"), []byte("3")}, frames: 2, ts: tsJPEGSV1, wantErr: codec.ErrCorrupt},
		{name: "JPEG first fragment without SOI", items: [][]byte{nil, []byte("0"), soi("1"), soi("2")}, frames: 2, ts: tsJPEGSV1, wantErr: codec.ErrCorrupt},
		{name: "BOT count differs", items: [][]byte{bot(0, 10), []byte("ab"), []byte("cd")}, frames: 3, ts: tsRLE, wantErr: codec.ErrCorrupt},
		{name: "BOT odd length", items: [][]byte{{0, 0, 0}, []byte("ab")}, frames: 1, ts: tsRLE, wantErr: codec.ErrCorrupt},
		{name: "BOT offset inside a fragment", items: [][]byte{bot(0, 11), []byte("ab"), []byte("cd")}, frames: 2, ts: tsRLE, wantErr: codec.ErrCorrupt},
		{name: "BOT offset past the end", items: [][]byte{bot(0, 400), []byte("ab"), []byte("cd")}, frames: 2, ts: tsRLE, wantErr: codec.ErrCorrupt},
		{name: "BOT offsets out of order", items: [][]byte{bot(10, 0), []byte("ab"), []byte("cd")}, frames: 2, ts: tsRLE, wantErr: codec.ErrCorrupt},
		{name: "BOT first offset not zero", items: [][]byte{bot(10), []byte("ab"), []byte("cd")}, frames: 1, ts: tsRLE, wantErr: codec.ErrCorrupt},
		{name: "EOT length too long", items: [][]byte{nil, []byte("ab"), []byte("cd")}, eot: []uint64{0, 10}, eotLen: []uint64{2, 3},
			frames: 2, ts: tsRLE, wantErr: codec.ErrCorrupt},
		{name: "EOT lengths count differs", items: [][]byte{nil, []byte("ab"), []byte("cd")}, eot: []uint64{0, 10}, eotLen: []uint64{2},
			frames: 2, ts: tsRLE, wantErr: codec.ErrCorrupt},
		{name: "EOT count differs", items: [][]byte{nil, []byte("ab"), []byte("cd")}, eot: []uint64{0}, frames: 2, ts: tsRLE, wantErr: codec.ErrCorrupt},
		{name: "EOT huge offset", items: [][]byte{nil, []byte("ab"), []byte("cd")}, eot: []uint64{0, 1 << 63}, frames: 2, ts: tsRLE, wantErr: codec.ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := codec.Frames(tc.items, tc.eot, tc.eotLen, tc.frames, tc.ts)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("frames (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFramesOffsetTables compresses five frames with dcmcjpeg in fragments of 1 KiB, and checks that the Basic
// Offset Table dcmcjpeg writes, an Extended Offset Table built from it, and SOI markers alone all find the same
// frames.
func TestFramesOffsetTables(t *testing.T) {
	ti := makeImage("u16x5")
	dir := t.TempDir()
	in, withBOT, noBOT := filepath.Join(dir, "in.dcm"), filepath.Join(dir, "bot.dcm"), filepath.Join(dir, "nobot.dcm")
	writeDICOM(t, in, ti)
	tool(t, "dcmcjpeg", "+fs", "1", in, withBOT)
	tool(t, "dcmcjpeg", "+fs", "1", "-ot", in, noBOT)
	p, q := parseDICOM(t, withBOT), parseDICOM(t, noBOT)
	if len(p.items) <= 6 || len(p.items[0]) != 20 || len(q.items[0]) != 0 {
		t.Fatalf("want more fragments than frames and a 5-entry BOT; got %d items, BOT %d bytes", len(p.items), len(p.items[0]))
	}
	byBOT, err := codec.Frames(p.items, nil, nil, 5, p.ts)
	if err != nil {
		t.Fatal(err)
	}
	byMarkers, err := codec.Frames(q.items, nil, nil, 5, q.ts)
	if err != nil {
		t.Fatal(err)
	}
	var eot, eotLen []uint64
	for i := 0; i < 5; i++ {
		eot = append(eot, uint64(binary.LittleEndian.Uint32(p.items[0][4*i:])))
		eotLen = append(eotLen, uint64(len(byBOT[i])))
	}
	items := append([][]byte{nil}, p.items[1:]...)
	byEOT, err := codec.Frames(items, eot, eotLen, 5, p.ts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(byBOT, byMarkers); diff != "" {
		t.Errorf("BOT and SOI markers disagree (-BOT +markers):\n%s", diff)
	}
	if diff := cmp.Diff(byBOT, byEOT); diff != "" {
		t.Errorf("BOT and EOT disagree (-BOT +EOT):\n%s", diff)
	}
	var all []byte
	for _, f := range byBOT {
		d, err := codec.Decode(p.ts, f, p.image())
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, d.Pixels...)
	}
	if m, _ := diffStats(t, ti.img, all, ti.pixels, false); m != 0 {
		t.Errorf("decoded frames differ from the original by up to %d", m)
	}
}

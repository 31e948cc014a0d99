package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"renkei/archive"
	"renkei/internal/dicomtest"
)

// seedDemo stores a few small CT studies with Japanese and Latin patient names, so that a new user can search and
// retrieve at once. Storing them again on the next start is a no-op (same bytes, same UIDs).
func seedDemo(ctx context.Context, arch *archive.Service, data string) error {
	dir, err := os.MkdirTemp(data, "demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	patients := []struct{ id, name string }{
		{"D0001", "Yamada^Taro=山田^太郎=ヤマダ^タロウ"},
		{"D0002", "Takahashi^Hanako=髙橋^花子=タカハシ^ハナコ"},
		{"D0003", "Buc^Jerome"},
	}
	for i, p := range patients {
		for j := 1; j <= 3; j++ {
			path := filepath.Join(dir, fmt.Sprintf("%d-%d.dcm", i, j))
			err := dicomtest.CT(path, dicomtest.CTOptions{
				StudyInstanceUID:  dicomtest.UID(fmt.Sprintf("demo-study-%d", i)),
				SeriesInstanceUID: dicomtest.UID(fmt.Sprintf("demo-series-%d", i)),
				SOPInstanceUID:    dicomtest.UID(fmt.Sprintf("demo-instance-%d-%d", i, j)),
				PatientID:         p.id, PatientName: p.name, AccessionNumber: fmt.Sprintf("DEMO%04d", i+1),
				Rows: 256, Cols: 256, InstanceNumber: j, Seed: int64(i*10 + j),
			})
			if err != nil {
				return err
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			res := arch.Store(ctx, f, archive.StoreRequest{Source: "demo"})
			f.Close()
			if res.Err != nil {
				return res.Err
			}
		}
	}
	return nil
}

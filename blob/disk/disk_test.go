package disk_test

import (
	"testing"

	"renkei/blob"
	"renkei/blob/blobtest"
	"renkei/blob/disk"
)

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, err := disk.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

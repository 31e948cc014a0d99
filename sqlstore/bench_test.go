package sqlstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkInsert measures the index alone: 16 writers inserting distinct instances (10 per series) through the
// group committer, as concurrent STOW-RS parts do.
func BenchmarkInsert(b *testing.B) {
	ctx := context.Background()
	db := openDB(b)
	var n atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	per := b.N/16 + 1
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				i := n.Add(1)
				in := inst(fmt.Sprint("P", i/100), fmt.Sprint("1.", i/100), fmt.Sprint("1.", i/10, ".1"), fmt.Sprint("1.", i, ".1.1"), "CT", fmt.Sprint("k", i))
				if _, _, err := db.Insert(ctx, in); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

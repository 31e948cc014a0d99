package main

import (
	"context"
	"log/slog"

	"renkei/pgbus"
)

// openBus opens what several nodes on one PostgreSQL share beyond the index: the bus for live events and consults,
// and leases for the work that one node runs. On SQLite (db empty) there is one node and no bus: nil.
func openBus(ctx context.Context, db string, logger *slog.Logger) (*pgbus.Bus, error) {
	if db == "" {
		return nil, nil
	}
	return pgbus.Open(ctx, db, logger.With("part", "bus"))
}

// runOnOneNode runs job on one node of the region until ctx ends: here without a bus (SQLite), else on whichever
// node holds the lease name, taken over by another node when the holder's connection to PostgreSQL dies. The
// returned function waits for the job (and the lease) to end.
func runOnOneNode(ctx context.Context, bus *pgbus.Bus, name string, job func(ctx context.Context)) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if bus == nil {
			job(ctx)
			return
		}
		bus.Lease(ctx, name, job)
	}()
	return func() { <-done }
}

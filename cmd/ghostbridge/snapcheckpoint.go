package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

// checkpointer signs checkpoints from the snapshot loop (snap.Deps
// AfterAppend) when the configured policy says one is due.
type checkpointer struct {
	st     *chain.Store
	signer note.Signer
	origin string
	file   string
	policy chain.CheckpointPolicy
	log    *slog.Logger
	now    func() time.Time
	// last is the latest checkpoint, or the last failed attempt, so a
	// failure is retried when the policy next says so, not every tick.
	last chain.Checkpoint
}

// newCheckpointer starts from the newest stored checkpoint whose signature
// checks out: the database's columns alone could be forged to say a
// checkpoint is never due.
func (a *App) newCheckpointer(ctx context.Context, st *chain.Store, signer note.Signer) (*checkpointer, error) {
	cc := a.conf.Config.Chain
	v, err := chain.VerifierFor(signer)
	if err != nil {
		return nil, err
	}
	last, err := st.LatestTrustedCheckpoint(ctx, v, cc.Origin)
	switch {
	case errors.Is(err, chain.ErrBadCheckpoint):
		a.log.Warn("newest stored checkpoint does not check out; signing a new one at the next tick", "err", err)
		last = chain.Checkpoint{}
	case err != nil && !errors.Is(err, chain.ErrNoCheckpoint):
		return nil, err
	}
	return &checkpointer{
		st: st, signer: signer, origin: cc.Origin, file: cc.CheckpointFile,
		policy: chain.CheckpointPolicy{Blocks: cc.CheckpointEvery, Interval: time.Duration(cc.CheckpointInterval)},
		log:    a.log, now: a.Now, last: last,
	}, nil
}

// afterAppend signs a checkpoint when one is due. A failure never stops the
// loop: snapshots matter more than checkpoints, and a refused checkpoint
// file is evidence an operator must look at, not a reason to stop
// recording.
func (c *checkpointer) afterAppend(ctx context.Context, head chain.Block) {
	now := c.now()
	size := head.Height + 1
	if !c.policy.Due(now, size, c.last) {
		return
	}
	cp, err := c.st.SignCheckpoint(ctx, chain.SignOptions{Signer: c.signer, Origin: c.origin, File: c.file, Now: c.now})
	if err == nil {
		c.last = cp
		c.log.Debug("checkpoint signed", "height", head.Height, "size", cp.Size, "file", c.file)
		return
	}
	c.last = chain.Checkpoint{Size: size, Time: now}
	var me *chain.MismatchError
	if errors.As(err, &me) {
		c.log.Error("CHECKPOINT REFUSED: the checkpoint file holds a checkpoint this chain does not extend; "+
			"the database may have been rolled back or rewritten. The file is kept as evidence and snapshots continue; "+
			"investigate with 'ghostbridge chain verify'",
			"reason", string(me.Failure.Reason), "height", me.Failure.Height, "file", c.file, "err", err)
		return
	}
	c.log.Error("checkpoint signing failed; snapshots continue", "height", head.Height, "file", c.file, "err", err)
}

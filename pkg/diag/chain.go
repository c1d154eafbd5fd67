package diag

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

// ChainInputs are what the chain and snapshots groups read: the database
// and, where configured, the signed checkpoint verification starts from.
type ChainInputs struct {
	// DB is the chain database path. It is opened read-only, and only if
	// it exists: diag never creates, migrates or writes to it.
	DB string
	// Trust, when set, makes chain.verify incremental from the trusted
	// checkpoint; nil verifies every block.
	Trust *chain.Trust
	// NoTrust says why Trust is nil, for the detail ("chain.verifier_key
	// is not set").
	NoTrust string
	// TrustErr is why a configured verifier key or checkpoint file could
	// not be read; chain.verify then fails with it.
	TrustErr error
	// Now is the clock for ages; nil means time.Now.
	Now func() time.Time
}

func (in ChainInputs) now() time.Time {
	if in.Now == nil {
		return time.Now()
	}
	return in.Now()
}

// Hints shared by the chain and snapshots checks.
const (
	hintStartLoop  = "start the snapshot loop: systemctl start ghostbridge-snap.service (or ghostbridge snap run); journalctl -u ghostbridge-snap.service says why it stopped"
	hintChainFault = "run ghostbridge chain verify --full for the first bad height, keep the database as evidence, and restore it from a backup"
)

// openChain opens the database read-only: diag neither creates nor
// migrates it, nor writes a genesis block into an empty file. A missing or
// unusable database is the check's outcome, not an error.
func openChain(ctx context.Context, db string) (*chain.Store, *Outcome) {
	st, err := chain.OpenReadOnly(ctx, db, chain.Options{})
	switch {
	case err == nil:
		return st, nil
	case errors.Is(err, chain.ErrNoDatabase):
		o := Fail("ghostbridge snap run creates it (systemctl start ghostbridge-snap.service); or point db (--db, GHOSTBRIDGE_DB) at the chain database",
			"chain database %s does not exist", db)
		return nil, &o
	case errors.Is(err, chain.ErrNotChain):
		o := Fail("point db (--db, GHOSTBRIDGE_DB) at the chain database; ghostbridge chain head shows what a path holds",
			"%v", err)
		return nil, &o
	case errors.Is(err, chain.ErrSchemaVersion):
		o := Fail("an older schema is migrated by the snapshot loop when it starts (systemctl start ghostbridge-snap.service); a newer one needs the ghostbridge version that wrote it",
			"%v", err)
		return nil, &o
	case ctx.Err() != nil:
		o := Unknown("a busy disk or a long write lock delays it: raise diag.timeout, or check the disk", "opening %s did not finish: %v", db, ctx.Err())
		return nil, &o
	}
	o := Unknown("check the file's permissions and the disk: ghostbridge chain head", "cannot open chain database %s: %v", db, err)
	return nil, &o
}

// withChain runs fn on the database. Within a Runner's run the checks
// share one read-only store, opened by the first of them and closed
// after the run; called on its own, it opens and closes its own.
func withChain(ctx context.Context, db string, fn func(*chain.Store) Outcome) Outcome {
	sc, _ := ctx.Value(chainScopeKey{}).(*chainScope)
	if sc == nil {
		st, o := openChain(ctx, db)
		if o != nil {
			return *o
		}
		defer st.Close()
		return fn(st)
	}
	st, o, release := sc.acquire(ctx, db)
	defer release()
	if o != nil {
		return *o
	}
	return fn(st)
}

// chainScopeKey carries a run's chainScope in the checks' context: the
// check constructors take paths, and the run, not the constructor,
// decides how long the database stays open.
type chainScopeKey struct{}

// chainScope is what the checks of one run share: each chain database,
// opened once by the first check that reads it. The stores are closed
// when the run has ended and every check that took one has returned, so a
// hung check never has its store closed under it.
type chainScope struct {
	mu     sync.Mutex
	dbs    map[string]*sharedChain
	users  int
	ended  bool
	closed bool
}

type sharedChain struct {
	ready chan struct{} // closed once the open has finished
	st    *chain.Store
	fail  *Outcome
}

// acquire returns the run's store for db, opening it if this is the
// first check to ask; release must be called when the check is done.
func (sc *chainScope) acquire(ctx context.Context, db string) (*chain.Store, *Outcome, func()) {
	sc.mu.Lock()
	sc.users++
	if sc.dbs == nil {
		sc.dbs = map[string]*sharedChain{}
	}
	sh, opened := sc.dbs[db]
	if !opened {
		sh = &sharedChain{ready: make(chan struct{})}
		sc.dbs[db] = sh
	}
	sc.mu.Unlock()
	if !opened {
		sh.st, sh.fail = openChain(ctx, db)
		close(sh.ready)
	}
	select {
	case <-sh.ready:
	case <-ctx.Done():
		o := Unknown("a busy disk or a long write lock delays it: raise diag.timeout, or check the disk",
			"opening %s did not finish: %v", db, ctx.Err())
		return nil, &o, sc.release
	}
	return sh.st, sh.fail, sc.release
}

func (sc *chainScope) release() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.users--
	sc.closeIfDone()
}

// end marks the run over.
func (sc *chainScope) end() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.ended = true
	sc.closeIfDone()
}

// closeIfDone closes the stores once the run is over and unused; the
// caller holds mu. Every open has finished then: its opener is a user.
func (sc *chainScope) closeIfDone() {
	if !sc.ended || sc.users > 0 || sc.closed {
		return
	}
	sc.closed = true
	for _, sh := range sc.dbs {
		if sh.st != nil {
			_ = sh.st.Close() // read-only: closing loses nothing
		}
	}
}

// ChainChecks returns chain.verify and chain.head_age.
func ChainChecks(in ChainInputs) []Check {
	return []Check{
		{Name: "chain.verify", Run: func(ctx context.Context) Outcome { return verifyChain(ctx, in) }},
		{Name: "chain.head_age", Run: func(ctx context.Context) Outcome { return headAge(ctx, in) }},
	}
}

func verifyChain(ctx context.Context, in ChainInputs) Outcome {
	if in.TrustErr != nil {
		return Fail("fix chain.verifier_key or chain.checkpoint_file (ghostbridge config show); ghostbridge chain verify says the same",
			"cannot load the trusted checkpoint: %v", in.TrustErr)
	}
	return withChain(ctx, in.DB, func(st *chain.Store) Outcome {
		opts := chain.VerifyOptions{Trust: in.Trust, Incremental: in.Trust != nil}
		res, err := st.Verify(ctx, opts)
		if f := res.Failure; f != nil {
			where := fmt.Sprintf("height %d: ", f.Height)
			if f.Reason.Heightless() {
				where = ""
			}
			return Fail(hintChainFault, "chain does not verify: %s%s (%s)", where, f.Reason, f.Detail)
		}
		if err != nil {
			if ctx.Err() != nil {
				return Unknown("verification is incremental and fast once checkpoints are signed: set chain.verifier_key and chain.signing_key; or raise diag.timeout",
					"verification did not finish: %v", err)
			}
			return Unknown("run ghostbridge chain verify to see the error", "cannot verify: %v", err)
		}
		if in.Trust == nil {
			why := in.NoTrust
			if why == "" {
				why = "no checkpoint configured"
			}
			return Pass("%d %s verified up to height %d (full; not anchored to a signed checkpoint: %s)",
				res.Checked, plural(res.Checked, "block", "blocks"), res.To, why)
		}
		cp := uint64(0)
		if res.Checkpoint != nil {
			cp = res.Checkpoint.Size
		}
		return Pass("%d %s verified up to height %d (incremental, from the signed checkpoint of %d %s)",
			res.Checked, plural(res.Checked, "block", "blocks"), res.To, cp, plural(cp, "block", "blocks"))
	})
}

// clockSlack is how far in the future the head's time may be before the
// clock is held to have stepped back: block times come from the clock of
// whoever appended, and hosts disagree by milliseconds.
const clockSlack = time.Second

func headAge(ctx context.Context, in ChainInputs) Outcome {
	return withChain(ctx, in.DB, func(st *chain.Store) Outcome {
		head, err := st.Head(ctx)
		if err != nil {
			return Unknown("run ghostbridge chain head to see the error", "cannot read the chain head: %v", err)
		}
		age := in.now().Sub(head.Time)
		if age < -clockSlack {
			return Fail("check the system clock (timedatectl status, chronyc tracking): blocks appended now would be older than the head and fail verification as time_backwards",
				"chain head (height %d, %s) is %s in the future", head.Height, head.Time.Format(time.RFC3339), (-age).Round(time.Millisecond))
		}
		return Pass("head at height %d (%s), %s old", head.Height, head.Kind, max(age, 0).Round(time.Millisecond))
	})
}

func plural(n uint64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

type chainLogOptions struct {
	N      int
	Follow bool
	Kinds  []string
}

func newChainLogCmd(a *App) *cobra.Command {
	opts := &chainLogOptions{}
	kinds := kindNames()
	cmd := &cobra.Command{
		Use:   "log",
		Short: "List blocks, newest last, and optionally follow new ones",
		Long: `List the last N blocks in height order. With --follow, keep polling the
database and print blocks as they are appended until interrupted (then
exit 0).

With --format json every block is one line: {"schema":1,"type":"block",...}
with the fields of "chain show --format json".`,
		Example: `  ghostbridge chain log
  ghostbridge chain log -n 100 --kind snapshot.deleted
  ghostbridge chain log --follow --format json | jq -c .`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runChainLog(cmd.Context(), a, opts)
		},
	}
	cmd.Flags().IntVarP(&opts.N, "lines", "n", 20, "show the last `N` blocks (0 for all)")
	cmd.Flags().BoolVarP(&opts.Follow, "follow", "f", false, "keep printing blocks as they are appended")
	cmd.Flags().StringSliceVar(&opts.Kinds, "kind", nil, "only blocks of kind `K` (repeatable): "+strings.Join(kinds, ", "))
	_ = cmd.RegisterFlagCompletionFunc("kind", cobra.FixedCompletions(kinds, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func runChainLog(ctx context.Context, a *App, opts *chainLogOptions) error {
	if opts.N < 0 {
		return usageErrorf(fmt.Errorf("-n %d: want 0 (all) or more", opts.N))
	}
	var kinds []chain.Kind
	for _, k := range opts.Kinds {
		if !chain.Kind(k).Known() {
			return usageErrorf(fmt.Errorf("--kind %q: want one of %s", k, strings.Join(kindNames(), ", ")))
		}
		if !slices.Contains(kinds, chain.Kind(k)) {
			kinds = append(kinds, chain.Kind(k))
		}
	}
	return a.withChain(ctx, func(st *chain.Store) error {
		head, err := st.Head(ctx)
		if err != nil {
			return err
		}
		// To pins the listing to the head read above, so a block appended
		// meanwhile is printed once, by the follow loop.
		blocks, err := st.Blocks(ctx, chain.Query{To: max(head.Height, 1), Limit: opts.N, Kinds: kinds, Newest: opts.N > 0})
		if err != nil {
			return err
		}
		blocks = slices.DeleteFunc(blocks, func(b chain.Block) bool { return b.Height > head.Height })
		p := a.newBlockPrinter()
		if err := p.print(blocks); err != nil {
			return err
		}
		if !opts.Follow {
			return nil
		}
		return a.follow(ctx, st, head.Height+1, kinds, p)
	})
}

// follow polls for blocks from height next on until ctx ends, which is the
// normal way to stop it and not an error.
func (a *App) follow(ctx context.Context, st *chain.Store, next uint64, kinds []chain.Kind, p *blockPrinter) error {
	t := time.NewTicker(a.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		head, err := st.Head(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if head.Height < next {
			continue
		}
		blocks, err := st.Blocks(ctx, chain.Query{From: next, To: head.Height, Kinds: kinds})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := p.print(blocks); err != nil {
			return err
		}
		next = head.Height + 1
	}
}

// kindNames lists the known block kinds, for help, completion and errors.
func kindNames() []string {
	s := make([]string, len(chain.Kinds))
	for i, k := range chain.Kinds {
		s[i] = string(k)
	}
	return s
}

// blockPrinter writes blocks as a stream: fixed-width text rows under one
// header, or one JSON object per line.
type blockPrinter struct {
	a       *App
	st      styles
	started bool
}

func (a *App) newBlockPrinter() *blockPrinter {
	return &blockPrinter{a: a, st: newStyles(a.IO.Renderer())}
}

func (p *blockPrinter) print(blocks []chain.Block) error {
	out := p.a.IO.Out
	if p.a.format == FormatJSON {
		for _, b := range blocks {
			if err := writeJSONLine(out, "block", b); err != nil {
				return err
			}
		}
		return nil
	}
	var sb strings.Builder
	if !p.started {
		p.started = true
		sb.WriteString(p.st.header.Render(fmt.Sprintf("%-8s  %-24s  %-17s  %s", "HEIGHT", "TIME", "KIND", "DETAIL")))
		sb.WriteByte('\n')
	}
	for _, b := range blocks {
		kind := p.st.kind.Render(fmt.Sprintf("%-17s", b.Kind))
		fmt.Fprintf(&sb, "%-8d  %-24s  %s  %s\n", b.Height, formatTime(b.Time), kind, blockSummary(b))
	}
	_, err := fmt.Fprint(out, sb.String())
	return err
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
)

// App holds what every command needs: the streams, the environment, the
// clock and, once flags are parsed, the configuration and logger. Tests
// build one with NewApp and replace fields before Run.
type App struct {
	IO  *IOStreams
	Env func(string) string
	// Now is the clock for ages and the snapshot loop.
	Now     func() time.Time
	Version VersionInfo
	// DefaultConfigFiles are tried in order when neither --config nor
	// GHOSTBRIDGE_CONFIG names a file; none existing is fine.
	DefaultConfigFiles []string
	// PollInterval is how often `chain log --follow` looks for new blocks.
	PollInterval time.Duration

	v       *viper.Viper
	flags   globalFlags
	started bool // flags parsed and arguments accepted: errors are no longer usage errors
	format  Format
	conf    loadedConfig
	log     *slog.Logger
}

type globalFlags struct {
	config, db, format, logLevel, logFormat string
	noColor                                 bool
}

// annotSkipConfig marks commands that must work with a broken or missing
// config file (version, help groups, config validate, gen-docs).
const annotSkipConfig = "ghostbridge/skip-config"

// annotFormats lists, comma-separated, the --format values a command
// accepts beyond text and json.
const annotFormats = "ghostbridge/formats"

// NewApp returns an App wired to ios and env with production defaults.
func NewApp(ios *IOStreams, env func(string) string) *App {
	return &App{
		IO:                 ios,
		Env:                env,
		Now:                time.Now,
		Version:            buildVersion(),
		DefaultConfigFiles: []string{"/etc/ghostbridge/config.toml", "/etc/ghostbridge/config.yaml"},
		PollInterval:       500 * time.Millisecond,
		log:                slog.New(slog.DiscardHandler),
	}
}

// Run executes one command line (without the program name) and returns the
// process exit code. Errors are printed once, on stderr.
func (a *App) Run(ctx context.Context, args []string) int {
	defer a.releaseDefaultLog()
	root := newRootCmd(a)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var verdict *diagExit
	if errors.As(err, &verdict) {
		return verdict.code // the report already said why
	}
	if !a.started {
		err = usageErrorf(err)
	}
	code := exitCode(ctx, err)
	if cmd != nil && cmd.Annotations[annotNagios] != "" {
		// A monitoring plugin that could not check says UNKNOWN, whatever
		// went wrong: Nagios reads 1 and 2 as the host's state.
		code = exitNagiosUnknown
	}
	a.printError(cmd, err, code)
	return code
}

func (a *App) printError(cmd *cobra.Command, err error, code int) {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	var u *usageError
	if errors.As(err, &u) && cmd != nil {
		msg += fmt.Sprintf(" (see '%s --help')", cmd.CommandPath())
	}
	format := a.format
	if format == "" {
		format, _ = parseFormat(a.flags.format)
	}
	if format == FormatJSON {
		type errBody struct {
			Message string `json:"message"`
			Code    int    `json:"code"`
		}
		if werr := writeJSONLine(a.IO.ErrOut, "", struct {
			Error errBody `json:"error"`
		}{errBody{Message: msg, Code: code}}); werr == nil {
			return
		}
	}
	fmt.Fprintf(a.IO.ErrOut, "Error: %s\n", msg)
}

const rootLong = `ghostbridge is the operator's toolkit for a GhostBridge host. "snap run"
takes a read-only BTRFS snapshot of each configured subvolume every second
and records each one as a block in a SHA-256 hash chain kept in SQLite;
"chain verify" checks that chain at any time.

Configuration comes from, highest precedence first: flags, GHOSTBRIDGE_*
environment variables (the key with "." replaced by "_", upper-cased, e.g.
GHOSTBRIDGE_SNAP_INTERVAL for snap.interval), the config file (--config or
GHOSTBRIDGE_CONFIG; default /etc/ghostbridge/config.toml, else config.yaml)
and built-in defaults. "ghostbridge config show" prints the result.

Results go to stdout (--format json for scripts); logs, progress and errors
go to stderr.

` + exitCodesHelp

func newRootCmd(a *App) *cobra.Command {
	a.v = viper.New()
	root := &cobra.Command{
		Use:           "ghostbridge",
		Short:         "Snapshot BTRFS subvolumes into a verifiable hash chain",
		Long:          rootLong,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.preRun(cmd)
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetIn(a.IO.In)
	root.SetOut(a.IO.Out)
	root.SetErr(a.IO.ErrOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErrorf(err) })

	pf := root.PersistentFlags()
	pf.StringVar(&a.flags.config, "config", "", "config `FILE`: TOML, YAML or JSON by extension (default /etc/ghostbridge/config.toml, else config.yaml)")
	pf.StringVar(&a.flags.db, "db", defaultDB, "chain database `FILE` (overrides the config key db)")
	pf.StringVar(&a.flags.format, "format", string(FormatText), "output `FORMAT`: text or json")
	pf.StringVar(&a.flags.logLevel, "log-level", "info", "log `LEVEL`: debug, info, warn or error")
	pf.StringVar(&a.flags.logFormat, "log-format", "text", "log `FORMAT` on stderr: text or json")
	pf.BoolVar(&a.flags.noColor, "no-color", false, "disable colour (also NO_COLOR=1 or TERM=dumb)")
	_ = root.RegisterFlagCompletionFunc("format", func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		formats := []string{"text", "json"}
		if extra := cmd.Annotations[annotFormats]; extra != "" {
			formats = append(formats, strings.Split(extra, ",")...)
		}
		return formats, cobra.ShellCompDirectiveNoFileComp
	})
	_ = root.RegisterFlagCompletionFunc("log-level", cobra.FixedCompletions([]string{"debug", "info", "warn", "error"}, cobra.ShellCompDirectiveNoFileComp))
	_ = root.RegisterFlagCompletionFunc("log-format", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	_ = root.MarkPersistentFlagFilename("config", "toml", "yaml", "yml", "json")
	_ = root.MarkPersistentFlagFilename("db", "db")

	root.AddCommand(
		newChainCmd(a),
		newSnapCmd(a),
		newVectorCmd(a),
		newNetCmd(a),
		newVMCmd(a),
		newDiagCmd(a),
		newConfigCmd(a),
		newVersionCmd(a),
		newGenDocsCmd(a),
		&cobra.Command{
			Use:   "exit-codes",
			Short: "Exit codes and what they mean",
			Long:  exitCodesHelp,
		},
	)
	return root
}

// newGroupCmd makes a noun command that only holds verbs. Run alone it
// prints its help; with an unknown verb it is a usage error.
func newGroupCmd(use, short, long string) *cobra.Command {
	return &cobra.Command{
		Use:         use,
		Short:       short,
		Long:        long,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{annotSkipConfig: "true"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
}

// preRun validates global flags, loads the configuration (unless the
// command works without one) and builds the logger.
func (a *App) preRun(cmd *cobra.Command) error {
	a.started = true
	f, err := parseFormat(a.flags.format)
	if extra := cmd.Annotations[annotFormats]; err != nil && extra != "" {
		if slices.Contains(strings.Split(extra, ","), a.flags.format) {
			f, err = Format(a.flags.format), nil
		} else {
			err = usageErrorf(fmt.Errorf("--format %q: want text, json or %s", a.flags.format, strings.ReplaceAll(extra, ",", ", ")))
		}
	}
	if err != nil {
		return err
	}
	a.format = f
	if a.flags.noColor {
		a.IO.DisableColor()
	}
	journal := a.Env("JOURNAL_STREAM") != ""
	if cmd.Annotations[annotSkipConfig] != "" {
		// No config here, but bad logging flags are still mistakes.
		cfg := defaultConfig()
		cfg.Log = LogConfig{Level: a.flags.logLevel, Format: a.flags.logFormat}
		var ce *ConfigError
		if err := cfg.Validate(); errors.As(err, &ce) {
			p := ce.Problems[0]
			return usageErrorf(fmt.Errorf("--%s %s: want %s", flagForKey[p.Key], p.Value, p.Want))
		}
		a.log = newLogger(a.IO.ErrOut, cfg.Log.Level, cfg.Log.Format, journal)
		a.claimDefaultLog()
		return nil
	}
	src, err := a.configFile(cmd)
	if err != nil {
		return err
	}
	lc, err := a.loadConfig(cmd, src, true)
	if err != nil {
		return err
	}
	a.conf = lc
	a.log = newLogger(a.IO.ErrOut, lc.Config.Log.Level, lc.Config.Log.Format, journal)
	a.claimDefaultLog()
	a.log.Debug("configuration loaded", "file", lc.File)
	return nil
}

package main

import (
	"bytes"
	"io"
	"os"
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"
	"golang.org/x/term"
)

// IOStreams carries the three standard streams and the terminal facts decided
// once at start-up, so no command looks at os.Stdout or the environment itself.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	outTTY  bool
	errTTY  bool
	color   bool
	profile termenv.Profile

	renderer *lipgloss.Renderer
}

// SystemIO returns streams bound to the process's stdin, stdout and stderr.
// Colour is on only when stdout is a terminal, NO_COLOR is unset and TERM is
// not "dumb"; --no-color can still turn it off later through DisableColor.
func SystemIO(env func(string) string) *IOStreams {
	ios := &IOStreams{
		In:     os.Stdin,
		Out:    os.Stdout,
		ErrOut: os.Stderr,
		outTTY: term.IsTerminal(int(os.Stdout.Fd())),
		errTTY: term.IsTerminal(int(os.Stderr.Fd())),
	}
	ios.color, ios.profile = colorFromEnv(env, ios.outTTY)
	return ios
}

// TestIO returns streams backed by buffers: not a terminal, no colour.
func TestIO() (ios *IOStreams, in, out, errOut *bytes.Buffer) {
	in, out, errOut = &bytes.Buffer{}, &bytes.Buffer{}, &bytes.Buffer{}
	return &IOStreams{In: in, Out: out, ErrOut: errOut, profile: termenv.Ascii}, in, out, errOut
}

// colorFromEnv applies the no-colour conventions (https://no-color.org) and
// picks the richest profile the terminal announces.
func colorFromEnv(env func(string) string, outTTY bool) (bool, termenv.Profile) {
	if !outTTY || env("NO_COLOR") != "" {
		return false, termenv.Ascii
	}
	termName := env("TERM")
	switch {
	case termName == "" || termName == "dumb":
		return false, termenv.Ascii
	case env("COLORTERM") == "truecolor" || env("COLORTERM") == "24bit":
		return true, termenv.TrueColor
	case strings.Contains(termName, "256color"):
		return true, termenv.ANSI256
	default:
		return true, termenv.ANSI
	}
}

// IsStdoutTTY reports whether stdout is a terminal.
func (s *IOStreams) IsStdoutTTY() bool { return s.outTTY }

// IsStderrTTY reports whether stderr is a terminal; progress bars need it.
func (s *IOStreams) IsStderrTTY() bool { return s.errTTY }

// ColorEnabled reports whether output may carry colour and styles.
func (s *IOStreams) ColorEnabled() bool { return s.color }

// DisableColor turns colour off (for --no-color); call it before Renderer.
func (s *IOStreams) DisableColor() {
	s.color = false
	s.profile = termenv.Ascii
	s.renderer = nil
}

// Renderer returns the lipgloss renderer for stdout with the colour profile
// forced from the start-up decision, so lipgloss never probes the terminal.
func (s *IOStreams) Renderer() *lipgloss.Renderer {
	if s.renderer == nil {
		r := lipgloss.NewRenderer(s.Out)
		if s.color {
			r.SetColorProfile(s.profile)
		} else {
			r.SetColorProfile(termenv.Ascii)
		}
		r.SetHasDarkBackground(true)
		s.renderer = r
	}
	return s.renderer
}

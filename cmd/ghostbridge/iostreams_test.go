package main

import (
	"testing"

	"github.com/muesli/termenv"
)

func TestColorDecision(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		tty  bool
		want termenv.Profile
		on   bool
	}{
		{"not a terminal", map[string]string{"TERM": "xterm-256color"}, false, termenv.Ascii, false},
		{"NO_COLOR", map[string]string{"TERM": "xterm-256color", "NO_COLOR": "1"}, true, termenv.Ascii, false},
		{"TERM=dumb", map[string]string{"TERM": "dumb"}, true, termenv.Ascii, false},
		{"no TERM", map[string]string{}, true, termenv.Ascii, false},
		{"256 colours", map[string]string{"TERM": "xterm-256color"}, true, termenv.ANSI256, true},
		{"truecolor", map[string]string{"TERM": "xterm", "COLORTERM": "truecolor"}, true, termenv.TrueColor, true},
		{"basic", map[string]string{"TERM": "vt100"}, true, termenv.ANSI, true},
	}
	for _, c := range cases {
		on, p := colorFromEnv(func(k string) string { return c.env[k] }, c.tty)
		if on != c.on || p != c.want {
			t.Errorf("%s: colour %v profile %v, want %v %v", c.name, on, p, c.on, c.want)
		}
	}
}

// TestRendererHonoursNoColor: styles render as plain text once colour is
// off, whatever the terminal said at start-up.
func TestRendererHonoursNoColor(t *testing.T) {
	ios, _, _, _ := TestIO()
	ios.color, ios.profile = true, termenv.ANSI256
	bold := newStyles(ios.Renderer()).bad.Render("x")
	if bold == "x" {
		t.Fatal("colour on: style rendered as plain text")
	}
	ios.DisableColor()
	if got := newStyles(ios.Renderer()).bad.Render("x"); got != "x" {
		t.Errorf("colour off: rendered %q, want plain x", got)
	}
}

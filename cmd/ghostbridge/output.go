package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/charmbracelet/lipgloss"
)

// Format is the value of --format.
type Format string

// Output formats.
const (
	FormatText Format = "text"
	FormatJSON Format = "json"
)

// jsonSchema is the version of every JSON document ghostbridge prints. It
// changes only when a field is removed or changes meaning.
const jsonSchema = 1

func parseFormat(s string) (Format, error) {
	switch Format(s) {
	case FormatText, FormatJSON:
		return Format(s), nil
	}
	return "", usageErrorf(fmt.Errorf("--format %q: want text or json", s))
}

// encodeObject marshals v (which must encode as a JSON object) with "schema"
// and, when typ is not empty, "type" as its first fields.
func encodeObject(typ string, v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode %T as JSON: %w", v, err)
	}
	body := bytes.TrimSpace(buf.Bytes())
	if len(body) < 2 || body[0] != '{' {
		return nil, fmt.Errorf("encode %T as JSON: not an object", v)
	}
	head := fmt.Sprintf(`{"schema":%d`, jsonSchema)
	if typ != "" {
		t, err := json.Marshal(typ)
		if err != nil {
			return nil, err
		}
		head += `,"type":` + string(t)
	}
	rest := bytes.TrimSpace(body[1:])
	var out bytes.Buffer
	out.WriteString(head)
	if len(rest) > 1 { // not "}"
		out.WriteByte(',')
	}
	out.Write(rest)
	return out.Bytes(), nil
}

// writeJSON prints one result document, indented for people who read it
// before piping it to jq.
func writeJSON(w io.Writer, v any) error {
	b, err := encodeObject("", v)
	if err != nil {
		return err
	}
	var ind bytes.Buffer
	if err := json.Indent(&ind, b, "", "  "); err != nil {
		return fmt.Errorf("indent JSON: %w", err)
	}
	ind.WriteByte('\n')
	_, err = w.Write(ind.Bytes())
	return err
}

// writeJSONLine prints one compact object of a stream, tagged with typ, so
// long-running commands can be read line by line.
func writeJSONLine(w io.Writer, typ string, v any) error {
	b, err := encodeObject(typ, v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// styles are the few text styles ghostbridge uses, bound to one renderer so
// a disabled colour profile strips them all.
type styles struct {
	header, ok, bad, dim, kind lipgloss.Style
}

func newStyles(r *lipgloss.Renderer) styles {
	return styles{
		header: r.NewStyle().Bold(true),
		ok:     r.NewStyle().Foreground(lipgloss.Color("2")).Bold(true),
		bad:    r.NewStyle().Foreground(lipgloss.Color("1")).Bold(true),
		dim:    r.NewStyle().Faint(true),
		kind:   r.NewStyle().Foreground(lipgloss.Color("6")),
	}
}

// renderTable writes rows as left-aligned columns separated by two spaces.
// Widths are measured with lipgloss.Width so styled cells line up; the last
// column is not padded, so lines carry no trailing blanks.
func renderTable(w io.Writer, st styles, header []string, rows [][]string) error {
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = lipgloss.Width(h)
	}
	for _, row := range rows {
		for i, cell := range row {
			if i < len(widths) {
				widths[i] = max(widths[i], lipgloss.Width(cell))
			}
		}
	}
	var b strings.Builder
	line := func(cells []string, style func(string) string) {
		for i, cell := range cells {
			last := i == len(cells)-1
			if style != nil {
				cell = style(cell)
			}
			b.WriteString(cell)
			if !last {
				b.WriteString(strings.Repeat(" ", widths[i]-lipgloss.Width(cell)+2))
			}
		}
		b.WriteByte('\n')
	}
	line(header, func(s string) string { return st.header.Render(s) })
	for _, row := range rows {
		line(row, nil)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

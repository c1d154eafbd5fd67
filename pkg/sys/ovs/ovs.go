// Package ovs drives Open vSwitch through ovs-vsctl and ovs-ofctl, run with
// argument vectors against an explicit OVSDB socket, so tests can point it
// at their own ovsdb-server.
//
// Every change is one ovs-vsctl transaction (all its commands commit
// together or not at all) or one ovs-ofctl bundle (flows are replaced
// atomically). The package decides nothing: it observes, applies the
// operations it is given and counts the mutations it made.
package ovs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultDB is the OVSDB socket of a host's ovsdb-server.
const DefaultDB = "/run/openvswitch/db.sock"

// Client runs ovs-vsctl and ovs-ofctl against one Open vSwitch instance.
type Client struct {
	db     string
	rundir string
	// Timeout bounds each ovs-vsctl call, including its wait for
	// ovs-vswitchd to apply a change.
	Timeout   time.Duration
	mutations atomic.Int64
}

// New returns a client for the OVSDB socket db. ovs-vswitchd's management
// sockets (BRIDGE.mgmt) are looked for in the socket's directory, where
// Open vSwitch puts both.
func New(db string) *Client {
	return &Client{db: db, rundir: filepath.Dir(db), Timeout: 30 * time.Second}
}

// DB is the OVSDB socket path.
func (c *Client) DB() string { return c.db }

// Mutations counts the transactions and flow replacements made.
func (c *Client) Mutations() int64 { return c.mutations.Load() }

// Port is one Port record with its first Interface.
type Port struct {
	Name        string            `json:"name"`
	Type        string            `json:"type"` // Interface type: "" (system), "internal", ...
	Tag         int               `json:"tag,omitempty"`
	OFPort      int               `json:"ofport"`
	ExternalIDs map[string]string `json:"external_ids,omitempty"`
}

// Bridge is one Bridge record and its ports.
type Bridge struct {
	Name         string            `json:"name"`
	DatapathType string            `json:"datapath_type"`
	FailMode     string            `json:"fail_mode"`
	OtherConfig  map[string]string `json:"other_config,omitempty"`
	ExternalIDs  map[string]string `json:"external_ids,omitempty"`
	Ports        map[string]Port   `json:"ports"`
}

// Op is one ovs-vsctl command; Transact joins ops into one transaction.
type Op []string

// AddBridge creates a bridge (or leaves an existing one).
func AddBridge(name string) Op { return Op{"--may-exist", "add-br", name} }

// DelBridge removes a bridge if it exists.
func DelBridge(name string) Op { return Op{"--if-exists", "del-br", name} }

// SetBridge sets columns of a bridge, e.g. "fail_mode=secure",
// "other-config:hwaddr=...".
func SetBridge(name string, cols ...string) Op {
	return append(Op{"set", "Bridge", name}, cols...)
}

// ClearBridge empties a column of a bridge.
func ClearBridge(name, col string) Op { return Op{"clear", "Bridge", name, col} }

// RemoveBridgeKey removes one key of a map column of a bridge.
func RemoveBridgeKey(name, col, key string) Op {
	return Op{"--if-exists", "remove", "Bridge", name, col, key}
}

// AddPort adds a port to a bridge (or leaves an existing one).
func AddPort(bridge, port string) Op { return Op{"--may-exist", "add-port", bridge, port} }

// DelPort removes a port from a bridge if it exists.
func DelPort(bridge, port string) Op { return Op{"--if-exists", "del-port", bridge, port} }

// SetPort sets columns of a port ("tag=10", "external_ids:k=v").
func SetPort(port string, cols ...string) Op { return append(Op{"set", "Port", port}, cols...) }

// ClearPort empties a column of a port.
func ClearPort(port, col string) Op { return Op{"clear", "Port", port, col} }

// SetInterface sets columns of an interface ("type=internal").
func SetInterface(iface string, cols ...string) Op {
	return append(Op{"set", "Interface", iface}, cols...)
}

// CommandError is a failed ovs-vsctl or ovs-ofctl run.
type CommandError struct {
	Argv   []string
	Stderr string
	Err    error
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("%s: %v: %s", strings.Join(e.Argv, " "), e.Err, e.Stderr)
}

func (e *CommandError) Unwrap() error { return e.Err }

func run(ctx context.Context, stdin io.Reader, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), &CommandError{Argv: cmd.Args, Stderr: strings.TrimSpace(errb.String()), Err: err}
	}
	return out.String(), nil
}

func (c *Client) vsctl(ctx context.Context, args ...string) (string, error) {
	base := []string{"--db=unix:" + c.db, "--timeout=" + strconv.Itoa(max(1, int(c.Timeout/time.Second)))}
	return run(ctx, nil, "ovs-vsctl", append(base, args...)...)
}

// Transact runs ops as one ovs-vsctl transaction and waits until
// ovs-vswitchd has applied it. No ops is no transaction.
func (c *Client) Transact(ctx context.Context, ops ...Op) error {
	if len(ops) == 0 {
		return nil
	}
	var args []string
	for _, op := range ops {
		args = append(args, "--")
		args = append(args, op...)
	}
	c.mutations.Add(1)
	_, err := c.vsctl(ctx, args...)
	return err
}

// Ping checks that ovsdb-server answers.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.vsctl(ctx, "--no-wait", "show")
	return err
}

// SetRoot sets columns of the root Open_vSwitch record
// ("external_ids:k=v").
func SetRoot(cols ...string) Op { return append(Op{"set", "Open_vSwitch", "."}, cols...) }

// RemoveRootKey removes one key of a map column of the root record.
func RemoveRootKey(col, key string) Op {
	return Op{"--if-exists", "remove", "Open_vSwitch", ".", col, key}
}

// Bridges reads every bridge with its ports in one read-only transaction.
func (c *Client) Bridges(ctx context.Context) (map[string]Bridge, error) {
	brs, _, err := c.ReadAll(ctx)
	return brs, err
}

// BridgeNames lists the bridges by name, sorted; it makes *Client a
// vm.Switch.
func (c *Client) BridgeNames(ctx context.Context) ([]string, error) {
	brs, err := c.Bridges(ctx)
	if err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(brs)), nil
}

// ReadAll reads every bridge with its ports, and external_ids of the root
// Open_vSwitch record, in one read-only transaction.
func (c *Client) ReadAll(ctx context.Context) (map[string]Bridge, map[string]string, error) {
	out, err := c.vsctl(ctx, "--format=json", "--data=json",
		"--", "--columns=name,datapath_type,fail_mode,other_config,external_ids,ports", "list", "Bridge",
		"--", "--columns=_uuid,name,tag,interfaces,external_ids", "list", "Port",
		"--", "--columns=_uuid,name,type,ofport", "list", "Interface",
		"--", "--columns=external_ids", "list", "Open_vSwitch")
	if err != nil {
		return nil, nil, err
	}
	dec := json.NewDecoder(strings.NewReader(out))
	var tables [4]table
	for i := range tables {
		if err := dec.Decode(&tables[i]); err != nil {
			return nil, nil, fmt.Errorf("ovs-vsctl list output %d: %w", i, err)
		}
	}
	root := map[string]string{}
	if rs := tables[3].rows(); len(rs) > 0 {
		root = rs[0].strMap("external_ids")
	}
	ifaces := map[string]Port{}
	for _, r := range tables[2].rows() {
		ifaces[r.uuid("_uuid")] = Port{Name: r.str("name"), Type: r.str("type"), OFPort: r.int("ofport")}
	}
	ports := map[string]Port{}
	for _, r := range tables[1].rows() {
		p := Port{Name: r.str("name"), Tag: r.int("tag"), ExternalIDs: r.strMap("external_ids")}
		if ids := r.uuids("interfaces"); len(ids) > 0 {
			i := ifaces[ids[0]]
			p.Type, p.OFPort = i.Type, i.OFPort
		}
		ports[r.uuid("_uuid")] = p
	}
	brs := map[string]Bridge{}
	for _, r := range tables[0].rows() {
		b := Bridge{
			Name: r.str("name"), DatapathType: r.str("datapath_type"), FailMode: r.str("fail_mode"),
			OtherConfig: r.strMap("other_config"), ExternalIDs: r.strMap("external_ids"), Ports: map[string]Port{},
		}
		for _, id := range r.uuids("ports") {
			if p, ok := ports[id]; ok {
				b.Ports[p.Name] = p
			}
		}
		brs[b.Name] = b
	}
	return brs, root, nil
}

// OpenVSwitchExternalIDs reads external_ids of the root record.
func (c *Client) OpenVSwitchExternalIDs(ctx context.Context) (map[string]string, error) {
	out, err := c.vsctl(ctx, "--format=json", "--data=json", "--", "--columns=external_ids", "list", "Open_vSwitch")
	if err != nil {
		return nil, err
	}
	var t table
	if err := json.Unmarshal([]byte(out), &t); err != nil {
		return nil, fmt.Errorf("ovs-vsctl list Open_vSwitch: %w", err)
	}
	rs := t.rows()
	if len(rs) == 0 {
		return map[string]string{}, nil
	}
	return rs[0].strMap("external_ids"), nil
}

// table is ovs-vsctl --format=json output.
type table struct {
	Headings []string            `json:"headings"`
	Data     [][]json.RawMessage `json:"data"`
}

type row map[string]json.RawMessage

func (t table) rows() []row {
	out := make([]row, 0, len(t.Data))
	for _, d := range t.Data {
		r := row{}
		for i, h := range t.Headings {
			if i < len(d) {
				r[h] = d[i]
			}
		}
		out = append(out, r)
	}
	return out
}

// atom decodes an OVSDB JSON value: a bare atom, ["uuid",x], ["set",[...]]
// or ["map",[[k,v],...]].
func decode(raw json.RawMessage) (kind string, v any) {
	var x any
	if json.Unmarshal(raw, &x) != nil {
		return "", nil
	}
	if a, ok := x.([]any); ok && len(a) == 2 {
		if k, ok := a[0].(string); ok {
			return k, a[1]
		}
	}
	return "atom", x
}

func (r row) str(col string) string {
	kind, v := decode(r[col])
	if s, ok := v.(string); ok && kind == "atom" {
		return s
	}
	return ""
}

func (r row) int(col string) int {
	kind, v := decode(r[col])
	if f, ok := v.(float64); ok && kind == "atom" {
		return int(f)
	}
	return 0
}

func (r row) uuid(col string) string {
	if kind, v := decode(r[col]); kind == "uuid" {
		s, _ := v.(string)
		return s
	}
	return ""
}

func (r row) uuids(col string) []string {
	kind, v := decode(r[col])
	switch kind {
	case "uuid":
		s, _ := v.(string)
		return []string{s}
	case "set":
		var out []string
		for _, e := range v.([]any) {
			if p, ok := e.([]any); ok && len(p) == 2 {
				if s, ok := p[1].(string); ok {
					out = append(out, s)
				}
			}
		}
		return out
	}
	return nil
}

func (r row) strMap(col string) map[string]string {
	out := map[string]string{}
	if kind, v := decode(r[col]); kind == "map" {
		for _, e := range v.([]any) {
			if p, ok := e.([]any); ok && len(p) == 2 {
				k, _ := p[0].(string)
				val, _ := p[1].(string)
				out[k] = val
			}
		}
	}
	return out
}

// mgmt is the OpenFlow management socket ovs-vswitchd opens per bridge.
func (c *Client) mgmt(bridge string) string {
	return "unix:" + filepath.Join(c.rundir, bridge+".mgmt")
}

// flowFile renders flows one per line for ovs-ofctl's FILE argument.
func flowFile(flows []string) (io.Reader, error) {
	var b strings.Builder
	for _, f := range flows {
		if strings.ContainsAny(f, "\n\r") {
			return nil, fmt.Errorf("flow %q: contains a line break", f)
		}
		b.WriteString(f)
		b.WriteByte('\n')
	}
	return strings.NewReader(b.String()), nil
}

// ReplaceFlows makes flows the bridge's whole flow table in one OpenFlow
// bundle: the switch never runs with a partial table.
func (c *Client) ReplaceFlows(ctx context.Context, bridge string, flows []string) error {
	in, err := flowFile(flows)
	if err != nil {
		return err
	}
	c.mutations.Add(1)
	_, err = run(ctx, in, "ovs-ofctl", "-O", "OpenFlow14", "--bundle", "replace-flows", c.mgmt(bridge), "-")
	return err
}

// FlowsMatch reports whether the bridge's flow table is exactly flows,
// compared by ovs-ofctl after it normalises both sides. diff lists the
// differences ("+" missing from the bridge, "-" extra on it).
func (c *Client) FlowsMatch(ctx context.Context, bridge string, flows []string) (ok bool, diff []string, err error) {
	in, err := flowFile(flows)
	if err != nil {
		return false, nil, err
	}
	// diff-flows reads only named files, not stdin.
	f, err := os.CreateTemp("", "ghostbridge-flows-*")
	if err != nil {
		return false, nil, err
	}
	defer func() { err = errors.Join(err, os.Remove(f.Name())) }()
	_, werr := io.Copy(f, in)
	if werr = errors.Join(werr, f.Close()); werr != nil {
		return false, nil, fmt.Errorf("flow file %s: %w", f.Name(), werr)
	}
	out, err := run(ctx, nil, "ovs-ofctl", "diff-flows", c.mgmt(bridge), f.Name())
	var ce *CommandError
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ce) && errors.As(ce.Err, &ee) && ee.ExitCode() == 2) {
		return false, nil, err
	}
	for _, l := range strings.Split(out, "\n") {
		// diff-flows prints each differing flow on a +/- line; skip any
		// further detail lines.
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "+") || strings.HasPrefix(l, "-") {
			diff = append(diff, l)
		}
	}
	return len(diff) == 0, diff, nil
}

// Flow is one installed flow with its counters.
type Flow struct {
	Text    string `json:"flow"`
	Packets uint64 `json:"packets"`
}

// DumpFlows lists the bridge's flows without cookies, durations or
// counters in Text; Packets carries n_packets.
func (c *Client) DumpFlows(ctx context.Context, bridge string) ([]Flow, error) {
	out, err := run(ctx, nil, "ovs-ofctl", "dump-flows", c.mgmt(bridge))
	if err != nil {
		return nil, err
	}
	var flows []Flow
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "NXST_FLOW") || strings.HasPrefix(l, "OFPST_FLOW") {
			continue
		}
		var f Flow
		var keep []string
		for _, part := range strings.Split(l, ", ") {
			k, v, _ := strings.Cut(part, "=")
			switch k {
			case "n_packets":
				f.Packets, _ = strconv.ParseUint(v, 10, 64)
			case "cookie", "duration", "table", "n_bytes", "idle_age", "hard_age":
			default:
				keep = append(keep, part)
			}
		}
		f.Text = strings.Join(keep, ", ")
		flows = append(flows, f)
	}
	slices.SortFunc(flows, func(a, b Flow) int { return strings.Compare(a.Text, b.Text) })
	return flows, nil
}

// SaveFlows returns the bridge's flow table in a form ReplaceFlows
// installs again unchanged: cookies, priorities, matches and actions,
// without counters or port names.
func (c *Client) SaveFlows(ctx context.Context, bridge string) ([]string, error) {
	out, err := run(ctx, nil, "ovs-ofctl", "--no-names", "--no-stats", "-O", "OpenFlow14", "dump-flows", c.mgmt(bridge))
	if err != nil {
		return nil, err
	}
	flows := []string{}
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "NXST_FLOW") && !strings.HasPrefix(l, "OFPST_FLOW") {
			flows = append(flows, l)
		}
	}
	slices.Sort(flows)
	return flows, nil
}

// ParseFlow asks ovs-ofctl whether it accepts flow as a flow-mod; the
// error carries ovs-ofctl's reason.
func (c *Client) ParseFlow(ctx context.Context, flow string) error {
	if strings.ContainsAny(flow, "\n\r") {
		return fmt.Errorf("flow %q: contains a line break", flow)
	}
	_, err := run(ctx, nil, "ovs-ofctl", "parse-flow", flow)
	return err
}

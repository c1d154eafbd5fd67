package libvirt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// defaultSocket is where go-libvirt's local dialer looks when the URI
// names no socket.
const defaultSocket = "/var/run/libvirt/libvirt-sock"

// ErrNotLocal: DialBounded was given a URI of a remote transport (tcp,
// tls, ssh), whose connection it cannot bound.
var ErrNotLocal = errors.New("only local (unix socket) libvirt URIs can be bounded by a context")

// DialBounded connects to uri like Dial, for one short job that must not
// outlive ctx (a health check): the connection is closed when ctx ends,
// which fails any call still waiting on a daemon that stopped answering.
// Close it as usual when done. Only local URIs (unix transport, the
// default) can be bounded; others are refused with ErrNotLocal.
func DialBounded(ctx context.Context, uri string) (*Conn, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("libvirt URI %q: %w", uri, err)
	}
	scheme, transport, _ := strings.Cut(u.Scheme, "+")
	if scheme == "" || (transport != "" && transport != "unix") || (transport == "" && u.Host != "") {
		return nil, fmt.Errorf("libvirt %s: %w", uri, ErrNotLocal)
	}
	sock := u.Query().Get("socket")
	if sock == "" {
		sock = defaultSocket
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, fmt.Errorf("libvirt %s: %w", uri, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	l := golibvirt.NewWithDialer(dialers.NewAlreadyConnected(nc))
	if err := l.ConnectToURI(golibvirt.RemoteURI(u)); err != nil {
		stop()
		_ = nc.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("libvirt %s: %w", uri, err)
	}
	return &Conn{l: l, uri: uri}, nil
}

// Version is the daemon's libvirt version ("10.0.0"): a cheap call that
// shows the daemon answers.
func (c *Conn) Version(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	v, err := c.l.ConnectGetLibVersion()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return "", fmt.Errorf("libvirt %s: version: %w", c.uri, err)
	}
	return fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000), nil
}

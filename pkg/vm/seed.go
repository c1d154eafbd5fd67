package vm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// CloudInit is what goes into a guest's cloud-init NoCloud seed.
type CloudInit struct {
	Hostname string `json:"hostname,omitempty"`
	// SSHKeys are public keys in authorized_keys form.
	SSHKeys []string `json:"ssh_keys,omitempty"`
	// UserData is an operator's own user-data file; when set it is used
	// as is and Hostname and SSHKeys only reach meta-data.
	UserData []byte `json:"-"`
	// NetworkConfig, when set, becomes the seed's network-config file.
	NetworkConfig []byte `json:"-"`
}

// Empty reports whether no seed is wanted.
func (c CloudInit) Empty() bool {
	return c.Hostname == "" && len(c.SSHKeys) == 0 && len(c.UserData) == 0 && len(c.NetworkConfig) == 0
}

// SeedVolumeName is the name of the cloud-init seed volume made for a guest.
func SeedVolumeName(name string) string { return name + "-cidata.iso" }

// SeedLabel is the volume label cloud-init's NoCloud source looks for.
const SeedLabel = "cidata"

// SeedFiles returns the NoCloud files for guest name: meta-data always,
// user-data (the operator's file, or a #cloud-config made from the
// hostname and keys), and network-config when given.
func SeedFiles(name string, c CloudInit) map[string][]byte {
	host := c.Hostname
	if host == "" {
		host = name
	}
	var md bytes.Buffer
	fmt.Fprintf(&md, "instance-id: %s\nlocal-hostname: %s\n", name, host)
	files := map[string][]byte{"meta-data": md.Bytes()}
	if len(c.UserData) > 0 {
		files["user-data"] = c.UserData
	} else {
		var ud bytes.Buffer
		ud.WriteString("#cloud-config\n")
		fmt.Fprintf(&ud, "hostname: %s\n", host)
		if len(c.SSHKeys) > 0 {
			ud.WriteString("ssh_authorized_keys:\n")
			for _, k := range c.SSHKeys {
				fmt.Fprintf(&ud, "  - %q\n", strings.TrimSpace(k))
			}
		}
		files["user-data"] = ud.Bytes()
	}
	if len(c.NetworkConfig) > 0 {
		files["network-config"] = c.NetworkConfig
	}
	return files
}

// ValidSSHKey reports whether line looks like one OpenSSH public key
// ("TYPE BASE64 [COMMENT]"); private keys are refused so they never end
// up on a seed image.
func ValidSSHKey(line string) error {
	line = strings.TrimSpace(line)
	if strings.Contains(line, "PRIVATE KEY") {
		return fmt.Errorf("%w: this is a private key; give the .pub file", ErrInvalidConfig)
	}
	f := strings.Fields(line)
	if len(f) < 2 || !(strings.HasPrefix(f[0], "ssh-") || strings.HasPrefix(f[0], "ecdsa-") || strings.HasPrefix(f[0], "sk-")) {
		return fmt.Errorf("%w: not an OpenSSH public key (want \"ssh-ed25519 AAAA... comment\")", ErrInvalidConfig)
	}
	return nil
}

// The seed image is written here rather than with a library: the layout is
// fixed (a handful of small files in the root directory), and names must
// survive exactly ("user-data", not "USER_DAT"), which needs Rock Ridge.
// github.com/kdomanski/iso9660 writes only mangled 8.3-style names, and
// github.com/diskfs/go-diskfs brings a logging and compression dependency
// tree for what is a few hundred bytes of headers. The tests read the
// image back with kdomanski's reader and with isoinfo when installed.
const sector = 2048

// Fixed sector layout: system area, primary volume descriptor, terminator,
// the two path tables, the root directory, the Rock Ridge continuation
// area, then file data.
const (
	secPVD  = 16
	secTerm = 17
	secLPT  = 18
	secMPT  = 19
	secRoot = 20
	secCE   = 21
	secData = 22
)

const (
	rrID  = "RRIP_1991A"
	rrDes = "THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS"
	rrSrc = "PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION."
)

func both32(v uint32) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, v)
	binary.BigEndian.PutUint32(b[4:], v)
	return b
}

func both16(v uint16) []byte {
	b := make([]byte, 4)
	binary.LittleEndian.PutUint16(b, v)
	binary.BigEndian.PutUint16(b[2:], v)
	return b
}

func padded(s string, n int) []byte {
	return []byte(s + strings.Repeat(" ", n-len(s)))
}

// px is a Rock Ridge POSIX attributes entry (RRIP 1.10 form).
func px(mode uint32, nlink uint32) []byte {
	b := []byte{'P', 'X', 36, 1}
	b = append(b, both32(mode)...)
	b = append(b, both32(nlink)...)
	b = append(b, both32(0)...) // uid root
	return append(b, both32(0)...)
}

// dirRecord builds one ISO 9660 directory record with system-use bytes su.
// Dates are left zero ("not specified") so equal inputs give equal images.
func dirRecord(id []byte, extent, size uint32, dir bool, su []byte) []byte {
	n := 33 + len(id)
	if len(id)%2 == 0 {
		n++
	}
	n += len(su)
	if n%2 == 1 {
		n++
	}
	r := make([]byte, 0, n)
	r = append(r, byte(n), 0)
	r = append(r, both32(extent)...)
	r = append(r, both32(size)...)
	r = append(r, make([]byte, 7)...)
	flags := byte(0)
	if dir {
		flags = 2
	}
	r = append(r, flags, 0, 0)
	r = append(r, both16(1)...)
	r = append(r, byte(len(id)))
	r = append(r, id...)
	if len(id)%2 == 0 {
		r = append(r, 0)
	}
	r = append(r, su...)
	for len(r) < n {
		r = append(r, 0)
	}
	return r
}

// primaryName is the plain ISO 9660 name ("USER_DATA.;1") that readers
// without Rock Ridge see.
func primaryName(name string) string {
	up := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, name)
	if len(up) > 30 {
		up = up[:30]
	}
	return up + ".;1"
}

// BuildSeedISO writes an ISO 9660 image labelled label holding files in its
// root directory, with Rock Ridge names so the names survive exactly.
// File names must be at most 200 bytes; the image is deterministic.
func BuildSeedISO(label string, files map[string][]byte) ([]byte, error) {
	if len(label) == 0 || len(label) > 32 {
		return nil, fmt.Errorf("%w: volume label %q: want 1..32 characters", ErrInvalidConfig, label)
	}
	type entry struct {
		name, primary string
		data          []byte
		extent        uint32
	}
	entries := make([]entry, 0, len(files))
	seen := map[string]string{}
	for name, data := range files {
		if name == "" || len(name) > 200 || strings.ContainsAny(name, "/\x00") {
			return nil, fmt.Errorf("%w: seed file name %q", ErrInvalidConfig, name)
		}
		p := primaryName(name)
		if other, dup := seen[p]; dup {
			return nil, fmt.Errorf("%w: seed files %q and %q share the ISO name %s", ErrInvalidConfig, name, other, p)
		}
		seen[p] = name
		entries = append(entries, entry{name: name, primary: p, data: data})
	}
	// ISO 9660 requires directory records in identifier order.
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.primary, b.primary) })
	next := uint32(secData)
	for i := range entries {
		entries[i].extent = next
		next += uint32((len(entries[i].data) + sector - 1) / sector)
	}
	total := next

	// The continuation area holds the ER entry naming Rock Ridge: it does
	// not fit in the root's "." record next to SP.
	er := []byte{'E', 'R', byte(8 + len(rrID) + len(rrDes) + len(rrSrc)), 1, byte(len(rrID)), byte(len(rrDes)), byte(len(rrSrc)), 1}
	er = append(er, rrID+rrDes+rrSrc...)
	ce := []byte{'C', 'E', 28, 1}
	ce = append(ce, both32(secCE)...)
	ce = append(ce, both32(0)...)
	ce = append(ce, both32(uint32(len(er)))...)
	sp := []byte{'S', 'P', 7, 1, 0xBE, 0xEF, 0}
	const dirMode, fileMode = 0o40555, 0o100444

	var root bytes.Buffer
	root.Write(dirRecord([]byte{0}, secRoot, sector, true, slices.Concat(sp, px(dirMode, 2), ce)))
	root.Write(dirRecord([]byte{1}, secRoot, sector, true, px(dirMode, 2)))
	for _, e := range entries {
		nm := append([]byte{'N', 'M', byte(5 + len(e.name)), 1, 0}, e.name...)
		root.Write(dirRecord([]byte(e.primary), e.extent, uint32(len(e.data)), false, slices.Concat(nm, px(fileMode, 1))))
	}
	if root.Len() > sector {
		return nil, fmt.Errorf("%w: %d seed files do not fit one directory sector", ErrInvalidConfig, len(entries))
	}

	img := make([]byte, int(total)*sector)
	at := func(s int) []byte { return img[s*sector : (s+1)*sector] }

	pvd := at(secPVD)
	pvd[0] = 1
	copy(pvd[1:], "CD001")
	pvd[6] = 1
	copy(pvd[8:40], padded("LINUX", 32))
	copy(pvd[40:72], padded(label, 32))
	copy(pvd[80:88], both32(total))
	copy(pvd[120:124], both16(1))
	copy(pvd[124:128], both16(1))
	copy(pvd[128:132], both16(sector))
	copy(pvd[132:140], both32(10))
	binary.LittleEndian.PutUint32(pvd[140:], secLPT)
	binary.BigEndian.PutUint32(pvd[148:], secMPT)
	copy(pvd[156:190], dirRecord([]byte{0}, secRoot, sector, true, nil))
	copy(pvd[190:318], padded("", 128))
	copy(pvd[318:446], padded("", 128))
	copy(pvd[446:574], padded("", 128))
	copy(pvd[574:702], padded("GHOSTBRIDGE", 128))
	copy(pvd[702:813], padded("", 111))
	for _, off := range []int{813, 830, 847, 864} {
		copy(pvd[off:off+16], "0000000000000000")
	}
	pvd[881] = 1

	term := at(secTerm)
	term[0] = 255
	copy(term[1:], "CD001")
	term[6] = 1

	// One path table entry: the root, its own parent.
	lpt, mpt := at(secLPT), at(secMPT)
	lpt[0], mpt[0] = 1, 1
	binary.LittleEndian.PutUint32(lpt[2:], secRoot)
	binary.BigEndian.PutUint32(mpt[2:], secRoot)
	binary.LittleEndian.PutUint16(lpt[6:], 1)
	binary.BigEndian.PutUint16(mpt[6:], 1)

	copy(at(secRoot), root.Bytes())
	copy(at(secCE), er)
	for _, e := range entries {
		copy(img[int(e.extent)*sector:], e.data)
	}
	return img, nil
}

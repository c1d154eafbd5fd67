package vm

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kdomanski/iso9660"
)

// readISO reads every root file of img with an independent ISO 9660
// reader, by Rock Ridge name.
func readISO(t *testing.T, img []byte) (label string, files map[string]string) {
	t.Helper()
	r, err := iso9660.OpenImage(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	label, err = r.Label()
	if err != nil {
		t.Fatal(err)
	}
	root, err := r.RootDir()
	if err != nil {
		t.Fatal(err)
	}
	kids, err := root.GetChildren()
	if err != nil {
		t.Fatal(err)
	}
	files = map[string]string{}
	for _, k := range kids {
		b, err := io.ReadAll(k.Reader())
		if err != nil {
			t.Fatal(err)
		}
		files[k.Name()] = string(b)
	}
	return label, files
}

func TestBuildSeedISO(t *testing.T) {
	big := strings.Repeat("x", 5000) // spans sectors
	c := CloudInit{Hostname: "web1", SSHKeys: []string{"ssh-ed25519 AAAAC3Nza op@host"}, NetworkConfig: []byte("version: 2\n" + big)}
	want := SeedFiles("web", c)
	img, err := BuildSeedISO(SeedLabel, want)
	if err != nil {
		t.Fatal(err)
	}
	label, got := readISO(t, img)
	if label != SeedLabel {
		t.Errorf("label %q, want %q", label, SeedLabel)
	}
	if len(got) != 3 {
		t.Errorf("files %v, want meta-data, user-data, network-config", got)
	}
	for name, data := range want {
		if got[name] != string(data) {
			t.Errorf("%s = %q, want %q", name, got[name], data)
		}
	}
	if !strings.Contains(got["user-data"], "#cloud-config\nhostname: web1\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAAC3Nza op@host\"\n") {
		t.Errorf("user-data:\n%s", got["user-data"])
	}
	if !strings.Contains(got["meta-data"], "instance-id: web\nlocal-hostname: web1\n") {
		t.Errorf("meta-data:\n%s", got["meta-data"])
	}
	again, _ := BuildSeedISO(SeedLabel, want)
	if !bytes.Equal(again, img) {
		t.Error("BuildSeedISO is not deterministic")
	}

	// isoinfo (genisoimage) is a second, unrelated reader.
	if _, err := exec.LookPath("isoinfo"); err != nil {
		t.Log("isoinfo not installed; checked with the Go reader only")
		return
	}
	path := filepath.Join(t.TempDir(), "seed.iso")
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("isoinfo", "-d", "-i", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Volume id: cidata") || !strings.Contains(string(out), "Rock Ridge signatures version 1 found") {
		t.Errorf("isoinfo -d: %v\n%s", err, out)
	}
	for name, data := range want {
		out, err := exec.Command("isoinfo", "-R", "-i", path, "-x", "/"+name).Output()
		if err != nil || string(out) != string(data) {
			t.Errorf("isoinfo -R -x /%s: %v, %d bytes, want %d", name, err, len(out), len(data))
		}
	}
}

func TestSeedUserDataAndKeys(t *testing.T) {
	f := SeedFiles("a", CloudInit{UserData: []byte("#cloud-config\nruncmd: [true]\n"), Hostname: "h"})
	if string(f["user-data"]) != "#cloud-config\nruncmd: [true]\n" || !strings.Contains(string(f["meta-data"]), "local-hostname: h") {
		t.Errorf("files = %q", f)
	}
	if _, ok := f["network-config"]; ok {
		t.Error("network-config without one given")
	}
	for line, ok := range map[string]bool{
		"ssh-ed25519 AAAAC3 me":               true,
		"ecdsa-sha2-nistp256 AAAA x":          true,
		"-----BEGIN OPENSSH PRIVATE KEY-----": false,
		"AAAAC3":                              false,
		"":                                    false,
	} {
		if err := ValidSSHKey(line); (err == nil) != ok {
			t.Errorf("ValidSSHKey(%q) = %v", line, err)
		}
	}
	if _, err := BuildSeedISO(SeedLabel, map[string][]byte{"a/b": nil}); err == nil {
		t.Error("a name with / accepted")
	}
}

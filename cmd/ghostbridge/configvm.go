package main

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/ghostbridge/ghostbridge/pkg/sys/libvirt"
	"github.com/ghostbridge/ghostbridge/pkg/vm"
)

// VMConfig is the [vm] table: where libvirt is and the named profiles
// `vm create --profile` starts from.
type VMConfig struct {
	URI        string      `json:"uri"`
	Pool       string      `json:"pool"`
	DomainType string      `json:"domain_type"`
	NoVNCURL   string      `json:"novnc_url"`
	Profiles   []VMProfile `json:"profiles"`
}

// VMProfile is one [[vm.profiles]] table. Sizes are strings as operators
// write them ("2GiB"); NICs are "BRIDGE" or "BRIDGE:VLAN".
type VMProfile struct {
	Name   string   `json:"name"`
	VCPUs  int      `json:"vcpus"`
	Memory string   `json:"memory"`
	Disk   string   `json:"disk"`
	NICs   []string `json:"nics"`
	UEFI   bool     `json:"uefi"`
}

func defaultVMConfig() VMConfig {
	return VMConfig{
		URI:        libvirt.DefaultURI,
		Pool:       "default",
		DomainType: "kvm",
		NoVNCURL:   "http://127.0.0.1:6080/vnc.html",
		Profiles:   []VMProfile{},
	}
}

var profileName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// decodeVM reads the [vm] keys; get is viper's Get.
func decodeVM(get func(string) any, dst *VMConfig) []Problem {
	var ps []Problem
	str := func(key string, d *string) {
		switch v := get(key).(type) {
		case nil:
		case string:
			*d = v
		default:
			ps = append(ps, Problem{Key: key, Value: showValue(v), Want: wantFor(key)})
		}
	}
	str("vm.uri", &dst.URI)
	str("vm.pool", &dst.Pool)
	str("vm.domain_type", &dst.DomainType)
	str("vm.novnc_url", &dst.NoVNCURL)
	switch v := get("vm.profiles").(type) {
	case nil:
	case []any:
		for i, item := range v {
			key := fmt.Sprintf("vm.profiles[%d]", i)
			m, ok := item.(map[string]any)
			if !ok {
				ps = append(ps, Problem{Key: key, Value: showValue(item), Want: wantFor("vm.profiles")})
				continue
			}
			var p VMProfile
			for k, raw := range m {
				bad := func() {
					ps = append(ps, Problem{Key: key + "." + k, Value: showValue(raw), Want: wantFor("vm.profiles")})
				}
				switch k {
				case "name", "memory", "disk":
					s, ok := raw.(string)
					if !ok {
						bad()
						continue
					}
					switch k {
					case "name":
						p.Name = s
					case "memory":
						p.Memory = s
					default:
						p.Disk = s
					}
				case "vcpus":
					n, ok := parseCount(raw)
					if !ok || n > vm.MaxVCPUs {
						bad()
						continue
					}
					p.VCPUs = int(n)
				case "uefi":
					b, ok := raw.(bool)
					if !ok {
						bad()
						continue
					}
					p.UEFI = b
				case "nics":
					list, ok := raw.([]any)
					if !ok {
						bad()
						continue
					}
					for _, e := range list {
						if s, ok := e.(string); ok {
							p.NICs = append(p.NICs, s)
						} else {
							bad()
						}
					}
				default:
					ps = append(ps, Problem{Key: key + "." + k, Want: "unknown key; a profile allows name, vcpus, memory, disk, nics, uefi"})
				}
			}
			dst.Profiles = append(dst.Profiles, p)
		}
	default:
		ps = append(ps, Problem{Key: "vm.profiles", Value: showValue(v), Want: wantFor("vm.profiles")})
	}
	return ps
}

// validateVM checks the [vm] table.
func (c Config) validateVM() []Problem {
	var ps []Problem
	v := c.VM
	bad := func(key string, val any, want string) {
		if want == "" {
			want = wantFor(key)
		}
		ps = append(ps, Problem{Key: key, Value: showValue(val), Want: want})
	}
	if u, err := url.Parse(v.URI); err != nil || u.Scheme == "" {
		bad("vm.uri", v.URI, "")
	}
	if v.Pool == "" || strings.ContainsAny(v.Pool, " /\t\n") {
		bad("vm.pool", v.Pool, "")
	}
	switch v.DomainType {
	case "kvm", "qemu", "test":
	default:
		bad("vm.domain_type", v.DomainType, "")
	}
	if v.NoVNCURL != "" {
		if u, err := url.Parse(v.NoVNCURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("vm.novnc_url", v.NoVNCURL, "")
		}
	}
	seen := map[string]bool{}
	for i, p := range v.Profiles {
		key := fmt.Sprintf("vm.profiles[%d]", i)
		if !profileName.MatchString(p.Name) || seen[p.Name] {
			bad(key+".name", p.Name, "a unique profile name of a-z A-Z 0-9 . _ - (1..64 characters)")
		}
		seen[p.Name] = true
		if p.VCPUs < 0 {
			bad(key+".vcpus", p.VCPUs, "")
		}
		for field, s := range map[string]string{"memory": p.Memory, "disk": p.Disk} {
			if s == "" {
				continue
			}
			if _, err := vm.ParseSize(s); err != nil {
				bad(key+"."+field, s, `a size such as "512MiB" or "2GiB"`)
			}
		}
		for j, n := range p.NICs {
			if _, err := vm.ParseNIC(n); err != nil {
				bad(fmt.Sprintf("%s.nics[%d]", key, j), n, `"BRIDGE" or "BRIDGE:VLAN" (VLAN 1..4094)`)
			}
		}
	}
	return ps
}

// vmTOML writes the [vm] table for `config show`.
func vmTOML(line func(key, name, value string), c VMConfig) {
	line("vm.uri", "uri", tomlString(c.URI))
	line("vm.pool", "pool", tomlString(c.Pool))
	line("vm.domain_type", "domain_type", tomlString(c.DomainType))
	line("vm.novnc_url", "novnc_url", tomlString(c.NoVNCURL))
	if len(c.Profiles) == 0 {
		return
	}
	items := make([]string, len(c.Profiles))
	for j, p := range c.Profiles {
		nics := make([]string, len(p.NICs))
		for i, n := range p.NICs {
			nics[i] = tomlString(n)
		}
		items[j] = fmt.Sprintf("{ name = %s, vcpus = %d, memory = %s, disk = %s, nics = [%s], uefi = %t }",
			tomlString(p.Name), p.VCPUs, tomlString(p.Memory), tomlString(p.Disk), strings.Join(nics, ", "), p.UEFI)
	}
	line("vm.profiles", "profiles", "["+strings.Join(items, ", ")+"]")
}

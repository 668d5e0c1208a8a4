package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

// Defaults.
const (
	DefaultBridge    = "ember0"
	DefaultSubnet    = "10.201.0.0/16"
	DefaultPluginDir = "/usr/lib/cni"
	// IfName is the container's interface.
	IfName = "eth0"
)

// Blocked are the destinations a container never reaches unless allowed:
// link-local (cloud metadata services), loopback, private networks, CGNAT,
// and multicast.
var Blocked = []string{"169.254.0.0/16", "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
	"100.64.0.0/10", "224.0.0.0/4", "0.0.0.0/8"}

// Config configures the network of one agent.
type Config struct {
	// Bridge is the Linux bridge the containers attach to. At most 15
	// bytes. Default: DefaultBridge.
	Bridge string
	// Subnet is the containers' IPv4 subnet. Default: DefaultSubnet.
	Subnet string
	// PluginDir holds the CNI plugin binaries. Default: DefaultPluginDir.
	PluginDir string
	// StateDir holds the IPAM allocations and the CNI cache; it is the
	// agent's alone, and Setup clears what it holds of containers that are
	// gone. Required.
	StateDir string
	// Allow are destinations otherwise Blocked that containers may reach
	// (e.g. an internal service's prefix). The host's own addresses are
	// never reachable.
	Allow []netip.Prefix
	// DNS are the resolvers containers use: reachable on port 53 even when
	// they are in a blocked range (never when they are the host itself).
	DNS []netip.Addr
}

func (c *Config) setDefaults() {
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if c.Subnet == "" {
		c.Subnet = DefaultSubnet
	}
	if c.PluginDir == "" {
		c.PluginDir = DefaultPluginDir
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	c.setDefaults()
	if len(c.Bridge) > 15 || strings.ContainsAny(c.Bridge, " /\"") {
		return fmt.Errorf("network: bridge %q: at most 15 characters, no spaces, slashes or quotes", c.Bridge)
	}
	p, err := netip.ParsePrefix(c.Subnet)
	if err != nil || !p.Addr().Is4() || p.Bits() > 28 {
		return fmt.Errorf("network: subnet %q: want an IPv4 prefix of at least 16 addresses", c.Subnet)
	}
	if !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("network: state dir %q must be absolute", c.StateDir)
	}
	return nil
}

// Network attaches and detaches container network namespaces.
type Network struct {
	cfg  Config
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
}

// New validates cfg. Call Setup before Attach.
func New(cfg Config) (*Network, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "ember-" + cfg.Bridge,
		"plugins": []any{map[string]any{
			"type": "bridge", "bridge": cfg.Bridge, "isGateway": true, "ipMasq": false, "hairpinMode": false,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": cfg.Subnet}}},
				"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				"dataDir": filepath.Join(cfg.StateDir, "ipam"),
			},
		}},
	}
	b, err := json.Marshal(conf)
	if err != nil {
		return nil, err
	}
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("network: CNI configuration: %w", err)
	}
	return &Network{
		cfg:  cfg,
		cni:  libcni.NewCNIConfigWithCacheDir([]string{cfg.PluginDir}, filepath.Join(cfg.StateDir, "cache"), nil),
		list: list,
	}, nil
}

// Setup clears what an earlier life of the agent left in StateDir and
// installs the nftables table. keep names attachments of that life whose
// containers still run (the agent took them back): their address
// allocations and cached results stay; every other one is removed. It is
// idempotent.
func (n *Network) Setup(ctx context.Context, keep map[string]bool) error {
	for _, p := range []string{"bridge", "host-local"} {
		if _, err := os.Stat(filepath.Join(n.cfg.PluginDir, p)); err != nil {
			return fmt.Errorf("network: CNI plugin %s: %w (install containernetworking-plugins)", p, err)
		}
	}
	if len(keep) == 0 {
		if err := os.RemoveAll(n.cfg.StateDir); err != nil {
			return fmt.Errorf("network: %w", err)
		}
	} else if err := n.prune(keep); err != nil {
		return err
	}
	if err := os.MkdirAll(n.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	return n.applyRules(ctx)
}

// prune removes the address allocations (host-local: a file per address
// naming its container) and cached CNI results (one file per
// "<network>-<container>-<interface>") of attachments not in keep.
func (n *Network) prune(keep map[string]bool) error {
	ipam := filepath.Join(n.cfg.StateDir, "ipam", n.list.Name)
	ents, err := os.ReadDir(ipam)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("network: %w", err)
	}
	for _, e := range ents {
		if _, err := netip.ParseAddr(e.Name()); err != nil {
			continue // the plugin's own files (last reserved, lock)
		}
		p := filepath.Join(ipam, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("network: %w", err)
		}
		owner, _, _ := strings.Cut(strings.ReplaceAll(string(b), "\r", ""), "\n")
		if !keep[strings.TrimSpace(owner)] {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("network: %w", err)
			}
		}
	}
	results := filepath.Join(n.cfg.StateDir, "cache", "results")
	ents, err = os.ReadDir(results)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("network: %w", err)
	}
	for _, e := range ents {
		id := strings.TrimSuffix(strings.TrimPrefix(e.Name(), n.list.Name+"-"), "-"+IfName)
		if !keep[id] {
			if err := os.Remove(filepath.Join(results, e.Name())); err != nil {
				return fmt.Errorf("network: %w", err)
			}
		}
	}
	return nil
}

// table is the nftables table of this agent's bridge.
func (n *Network) table() string { return "ember-" + n.cfg.Bridge }

// rules is the nftables script that (re)creates the table.
func (n *Network) rules() string {
	var blocked []string
	for _, b := range Blocked {
		p := netip.MustParsePrefix(b)
		allowed := false
		for _, a := range n.cfg.Allow {
			if a.Overlaps(p) && a.Bits() <= p.Bits() {
				allowed = true
			}
		}
		if !allowed {
			blocked = append(blocked, b)
		}
	}
	var allow []string
	for _, a := range n.cfg.Allow {
		allow = append(allow, a.String())
	}
	br := n.cfg.Bridge
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\n", n.table(), n.table())
	fmt.Fprintf(&b, "table inet %s {\n", n.table())
	fmt.Fprintf(&b, "  chain input {\n    type filter hook input priority filter - 1; policy accept;\n")
	fmt.Fprintf(&b, "    iifname %q ct state established,related accept\n", br)
	fmt.Fprintf(&b, "    iifname %q drop\n  }\n", br)
	fmt.Fprintf(&b, "  chain forward {\n    type filter hook forward priority filter - 1; policy accept;\n")
	fmt.Fprintf(&b, "    iifname %q oifname %q drop\n", br, br)
	fmt.Fprintf(&b, "    oifname %q ct state established,related accept\n", br)
	fmt.Fprintf(&b, "    oifname %q drop\n", br)
	if len(allow) > 0 {
		fmt.Fprintf(&b, "    iifname %q ip daddr { %s } accept\n", br, strings.Join(allow, ", "))
	}
	var dns []string
	for _, d := range n.cfg.DNS {
		if d.Is4() {
			dns = append(dns, d.String())
		}
	}
	if len(dns) > 0 {
		fmt.Fprintf(&b, "    iifname %q ip daddr { %s } meta l4proto { tcp, udp } th dport 53 accept\n", br, strings.Join(dns, ", "))
	}
	if len(blocked) > 0 {
		fmt.Fprintf(&b, "    iifname %q ip daddr { %s } drop\n", br, strings.Join(blocked, ", "))
	}
	fmt.Fprintf(&b, "    iifname %q meta nfproto ipv6 drop\n", br)
	fmt.Fprintf(&b, "    iifname %q accept\n  }\n", br)
	fmt.Fprintf(&b, "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n")
	fmt.Fprintf(&b, "    ip saddr %s oifname != %q masquerade\n  }\n}\n", n.cfg.Subnet, br)
	return b.String()
}

func (n *Network) applyRules(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(n.rules())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("network: nft: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Attachment is a container's place on the network.
type Attachment struct {
	// Addr is the container's address on the bridge.
	Addr netip.Prefix
	// Gateway is the bridge's address.
	Gateway netip.Addr
}

// Attach connects the network namespace at netnsPath to the bridge, for
// container id (unique on the agent).
func (n *Network) Attach(ctx context.Context, id, netnsPath string) (Attachment, error) {
	res, err := n.cni.AddNetworkList(ctx, n.list, n.runtimeConf(id, netnsPath))
	if err != nil {
		return Attachment{}, fmt.Errorf("network: attach %s: %w", id, err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		return Attachment{}, err
	}
	var r struct {
		IPs []struct {
			Address string `json:"address"`
			Gateway string `json:"gateway"`
		} `json:"ips"`
	}
	if err := json.Unmarshal(b, &r); err != nil || len(r.IPs) == 0 {
		return Attachment{}, fmt.Errorf("network: attach %s: no address in the CNI result %s", id, b)
	}
	var a Attachment
	a.Addr, err = netip.ParsePrefix(r.IPs[0].Address)
	if err != nil {
		return Attachment{}, fmt.Errorf("network: attach %s: %w", id, err)
	}
	a.Gateway, _ = netip.ParseAddr(r.IPs[0].Gateway)
	return a, nil
}

// Detach disconnects container id and releases its address. netnsPath may
// name a namespace that is already gone. Detaching what is not attached is
// success.
func (n *Network) Detach(ctx context.Context, id, netnsPath string) error {
	if err := n.cni.DelNetworkList(ctx, n.list, n.runtimeConf(id, netnsPath)); err != nil {
		return fmt.Errorf("network: detach %s: %w", id, err)
	}
	return nil
}

func (n *Network) runtimeConf(id, netnsPath string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: netnsPath, IfName: IfName}
}

// Close removes the nftables table (the bridge stays, empty, for the next
// start). Containers must be detached first.
func (n *Network) Close(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "nft", "delete", "table", "inet", n.table())
	if out, err := cmd.CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
		return fmt.Errorf("network: nft: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ErrNoNetwork is returned by Attach callers when a container asks for
// egress on an agent without a network.
var ErrNoNetwork = errors.New("network: this agent has no network for containers")

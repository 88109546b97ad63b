package u2net

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Modes of the network (DESIGN §4).
const (
	ModeUniversal   = "universal"   // separable adapters: per-domain depthwise, shared pointwise
	ModeShared      = "shared"      // one dense network, per-domain norms and heads
	ModeIndependent = "independent" // one dense network per domain
)

// Up-sampling kinds of the decoder.
const (
	UpsampleTranspose = "transpose" // [S] transposed conv, kernel = stride
	UpsampleNearest   = "nearest"   // nearest up-sampling then a conv unit (the reference's)
)

// Domain is one imaging domain the model segments.
type Domain struct {
	Name       string `json:"name"`
	InChannels int    `json:"in_channels"`
	Classes    int    `json:"classes"`
	// Plan is the domain's preprocessing plan, stored with the model once
	// trained; absent means intensities are used as given.
	Plan json.RawMessage `json:"plan,omitempty"`
}

// Config describes a network; it is stored in the model file's metadata.
type Config struct {
	Mode            string   `json:"mode"`
	BaseChannels    int      `json:"base_channels"`
	PoolsPerAxis    [3]int   `json:"pools_per_axis"`
	Upsample        string   `json:"upsample"`
	DeepSupervision bool     `json:"deep_supervision"`
	Residual        bool     `json:"residual"`
	Domains         []Domain `json:"domains"`
}

// DefaultConfig returns the defaults for new models: universal mode, base 16,
// five poolings per axis, transposed-conv up-sampling, deep supervision and
// residual connections, no domains.
func DefaultConfig() Config {
	return Config{
		Mode:            ModeUniversal,
		BaseChannels:    16,
		PoolsPerAxis:    [3]int{5, 5, 5},
		Upsample:        UpsampleTranspose,
		DeepSupervision: true,
		Residual:        true,
	}
}

// ParseConfig reads a config from JSON; fields it lacks keep DefaultConfig's
// values. Unknown fields are an error, so a typo is not silently ignored.
func ParseConfig(data []byte) (Config, error) {
	c := DefaultConfig()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// maxPools bounds the poolings per axis: 2^6 = 64 is already a large total
// stride for 3D medical volumes.
const maxPools = 6

// Validate checks the config and returns every problem found.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("config: "+format, args...)) }
	switch c.Mode {
	case ModeUniversal, ModeShared, ModeIndependent:
	default:
		add("unknown mode %q (want %s, %s or %s)", c.Mode, ModeUniversal, ModeShared, ModeIndependent)
	}
	switch c.Upsample {
	case UpsampleTranspose, UpsampleNearest:
	default:
		add("unknown upsample %q (want %s or %s)", c.Upsample, UpsampleTranspose, UpsampleNearest)
	}
	if c.BaseChannels <= 0 || c.BaseChannels > 4096 {
		add("base_channels = %d, want 1 to 4096", c.BaseChannels)
	}
	for i, p := range c.PoolsPerAxis {
		if p < 0 || p > maxPools {
			add("pools_per_axis[%d] = %d, want 0 to %d", i, p, maxPools)
		}
	}
	if len(c.Domains) == 0 {
		add("no domains")
	}
	seen := map[string]bool{}
	for i, d := range c.Domains {
		switch {
		case d.Name == "":
			add("domain %d has no name", i)
		case strings.ContainsAny(d.Name, ". \t\n/"):
			add("domain name %q may not contain dots, slashes or spaces", d.Name)
		case seen[d.Name]:
			add("duplicate domain name %q", d.Name)
		}
		seen[d.Name] = true
		if d.InChannels <= 0 || d.InChannels > 64 {
			add("domain %q: in_channels = %d, want 1 to 64", d.Name, d.InChannels)
		}
		if d.Classes < 2 || d.Classes > 256 {
			add("domain %q: classes = %d, want 2 to 256 (background counts)", d.Name, d.Classes)
		}
	}
	return errors.Join(errs...)
}

// Levels returns the number of resolution levels, max(pools) + 1.
func (c Config) Levels() int {
	return max(c.PoolsPerAxis[0], c.PoolsPerAxis[1], c.PoolsPerAxis[2]) + 1
}

// Stride returns the down-sampling stride from level i to level i+1 per
// axis: 2 while i < pools on that axis, else 1.
func (c Config) Stride(level int) [3]int {
	var s [3]int
	for a := range s {
		s[a] = 1
		if level < c.PoolsPerAxis[a] {
			s[a] = 2
		}
	}
	return s
}

// Channels returns the channels at level i: base·2^i.
func (c Config) Channels(level int) int { return c.BaseChannels << level }

// TotalStride returns the product of the strides per axis: input sizes must
// be multiples of it.
func (c Config) TotalStride() [3]int {
	return [3]int{1 << c.PoolsPerAxis[0], 1 << c.PoolsPerAxis[1], 1 << c.PoolsPerAxis[2]}
}

// CheckInputSize returns an error unless every axis of size (D, H, W) is a
// positive multiple of the total stride.
func (c Config) CheckInputSize(size [3]int) error {
	ts := c.TotalStride()
	axes := [3]string{"D", "H", "W"}
	for a := range size {
		if size[a] <= 0 || size[a]%ts[a] != 0 {
			return fmt.Errorf("input size %d×%d×%d: axis %s (%d) must be a positive multiple of %d (2^pools_per_axis = %d×%d×%d)",
				size[0], size[1], size[2], axes[a], size[a], ts[a], ts[0], ts[1], ts[2])
		}
	}
	// Instance norm needs more than one voxel per channel, the deepest
	// level's too.
	if size == ts {
		return fmt.Errorf("input size %d×%d×%d: the deepest level would hold one voxel; want at least twice the total stride %d×%d×%d on one axis",
			size[0], size[1], size[2], ts[0], ts[1], ts[2])
	}
	return nil
}

// DomainIndex returns the index of the named domain.
func (c Config) DomainIndex(name string) (int, error) {
	names := make([]string, len(c.Domains))
	for i, d := range c.Domains {
		if d.Name == name {
			return i, nil
		}
		names[i] = d.Name
	}
	return -1, fmt.Errorf("unknown domain %q; the model has %s", name, strings.Join(names, ", "))
}

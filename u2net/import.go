package u2net

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/nlpodyssey/safetensors"
)

// ImportTorch builds a model from the reference PyTorch implementation's
// state_dict saved as safetensors (keys exactly as PyTorch names them) and a
// config of the same architecture. Universal and shared modes are supported;
// the reference up-samples with nearest interpolation, so cfg.Upsample must
// be "nearest". Missing, unexpected and mis-shaped tensors are refused with
// a complete list.
func ImportTorch(path string, cfg Config) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkTorchLayout(cfg); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	st, err := safetensors.Deserialize(data)
	if err != nil {
		return nil, fmt.Errorf("import %s: not a readable safetensors file: %w", path, err)
	}
	m, err := New(cfg, 0)
	if err != nil {
		return nil, err
	}
	var problems []string
	used := map[string]bool{}
	for _, p := range m.Params {
		key, err := torchName(cfg, p.Name)
		if err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		used[key] = true
		tv, ok := st.Tensor(key)
		if !ok {
			problems = append(problems, fmt.Sprintf("missing %s %s (for %s)", key, p.shapeString(), p.Name))
			continue
		}
		v, err := torchValues(tv, p.Shape)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", key, err))
			continue
		}
		m.Values[p.Name] = v
	}
	for _, name := range st.Names() {
		if !used[name] {
			problems = append(problems, "unexpected "+name)
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return nil, fmt.Errorf("import %s: %d problem(s) against the config:\n  %s", path, len(problems), strings.Join(problems, "\n  "))
	}
	return m, nil
}

// checkTorchLayout reports why cfg has no state_dict layout of the
// reference's, if it has none.
func checkTorchLayout(cfg Config) error {
	if cfg.Mode != ModeUniversal && cfg.Mode != ModeShared {
		return fmt.Errorf("mode %q: the reference's state_dict layout is known for universal and shared modes", cfg.Mode)
	}
	if cfg.Upsample != UpsampleNearest {
		return fmt.Errorf(`the reference up-samples with nearest interpolation; a model with "upsample": %q has no counterpart in it`, cfg.Upsample)
	}
	return nil
}

// ExportTorch writes the model's parameters as the reference PyTorch
// implementation's state_dict, in safetensors (keys exactly as PyTorch names
// them, float32): what ImportTorch reads, and what the reference's
// load_state_dict takes after safetensors.torch.load_file. Only models the
// reference can express export: universal or shared, nearest up-sampling.
func (m *Model) ExportTorch(path string) error {
	if err := checkTorchLayout(m.Config); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	views := map[string]f32View{}
	for _, p := range m.Params {
		key, err := torchName(m.Config, p.Name)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		v, err := m.view(p)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		views[key] = v
	}
	meta := map[string]string{"format": "pt"}
	return writeAtomic(path, func(w *os.File) error { return safetensors.SerializeToWriter(views, meta, w) })
}

// torchValues decodes a float32 or float64 tensor of the expected shape.
func torchValues(tv safetensors.TensorView, want []int) ([]float32, error) {
	if tv.DType() == safetensors.F64 {
		got := tv.Shape()
		if !shapeEqual(got, want) {
			return nil, fmt.Errorf("shape %v, want %v", got, want)
		}
		b := tv.Data()
		v := make([]float32, len(b)/8)
		for i := range v {
			v[i] = float32(float64frombytes(b[8*i:]))
		}
		return v, nil
	}
	return tensorValues(tv, want)
}

func shapeEqual(got []uint64, want []int) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != uint64(want[i]) {
			return false
		}
	}
	return true
}

var (
	reScoped = regexp.MustCompile(`^(in|out)\.(conv|norm)\.([^.]+)\.(weight|bias)$`)
	reEnc    = regexp.MustCompile(`^(enc|dec)(\d+)\.(u1|u2|up)\.(.+)$`)
	reDown   = regexp.MustCompile(`^down(\d+)\.(conv|norm)\.(?:([^.]+)\.)?(weight|bias)$`)
	reDS     = regexp.MustCompile(`^ds(\d+)\.(conv|norm)\.([^.]+)\.(weight|bias)$`)
	reUnit   = regexp.MustCompile(`^(dw|dwnorm|norm)\.([^.]+)\.(weight|bias)$|^(pw|conv)\.(weight|bias)$`)
)

// torchName maps one of our parameter names to the reference's key.
func torchName(cfg Config, name string) (string, error) {
	dom := func(n string) (int, error) { return cfg.DomainIndex(n) }
	if m := reScoped.FindStringSubmatch(name); m != nil {
		d, err := dom(m[3])
		if err != nil {
			return "", err
		}
		switch m[1] + "." + m[2] {
		case "in.conv":
			return fmt.Sprintf("in_tr_list.%d.op1.0.%s", d, m[4]), nil
		case "in.norm":
			return fmt.Sprintf("in_tr_list.%d.op1.1.0.%s", d, m[4]), nil
		case "out.conv":
			return fmt.Sprintf("out_tr_list.%d.conv1.%s", d, m[4]), nil
		}
	}
	if m := reEnc.FindStringSubmatch(name); m != nil {
		var prefix string
		switch {
		case m[1] == "enc":
			prefix = fmt.Sprintf("down_blocks.%s.op%s.", m[2], m[3][1:])
		case m[3] == "up":
			prefix = fmt.Sprintf("up_samps.%s.op.", m[2])
		default:
			prefix = fmt.Sprintf("up_blocks.%s.op%s.", m[2], m[3][1:])
		}
		u := reUnit.FindStringSubmatch(m[4])
		if u == nil {
			return "", fmt.Errorf("parameter %s has no counterpart in the reference", name)
		}
		if u[4] != "" {
			if u[4] == "pw" {
				return prefix + "pwise.conv1." + u[5], nil
			}
			return prefix + "conv." + u[5], nil
		}
		d, err := dom(u[2])
		if err != nil {
			return "", err
		}
		switch u[1] {
		case "dw":
			return fmt.Sprintf("%sadapOps.%d.conv1.%s", prefix, d, u[3]), nil
		case "dwnorm":
			return fmt.Sprintf("%sadapOps.%d.op1.0.%s", prefix, d, u[3]), nil
		default:
			return fmt.Sprintf("%sop.%d.%s", prefix, d, u[3]), nil
		}
	}
	if m := reDown.FindStringSubmatch(name); m != nil {
		if m[2] == "conv" {
			return fmt.Sprintf("down_samps.%s.op1.conv.%s", m[1], m[4]), nil
		}
		d, err := dom(m[3])
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("down_samps.%s.op1.op.%d.%s", m[1], d, m[4]), nil
	}
	if m := reDS.FindStringSubmatch(name); m != nil {
		level, _ := strconv.Atoi(m[1])
		d, err := dom(m[3])
		if err != nil {
			return "", err
		}
		// The reference lists deep-supervision heads from the deepest one.
		j := min(2, cfg.Levels()-2) - level
		sub := "0"
		if m[2] == "norm" {
			sub = "1.0"
		}
		return fmt.Sprintf("dSupers.%d.%d.op1.%s.%s", j, d, sub, m[4]), nil
	}
	return "", fmt.Errorf("parameter %s has no counterpart in the reference", name)
}

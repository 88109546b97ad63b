package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/u2net-vk/u2net/u2net"
	"github.com/u2net-vk/u2net/u2net/predict"
	"github.com/u2net-vk/u2net/u2net/train"
)

func init() {
	register(command{name: "info", short: "print a model's config and parameter counts", run: runInfo})
	register(command{name: "import", short: "convert a reference PyTorch state_dict into a model file", run: runImport})
	register(command{name: "export", short: "write a model's parameters as the reference PyTorch implementation's state_dict", run: runExport})
}

func runInfo(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("info", "MODEL.safetensors | --config CONFIG.json", stderr)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	configPath := fs.String("config", "", "count the parameters of a config JSON instead of a model file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var m *u2net.Model
	switch {
	case *configPath != "" && fs.NArg() == 0:
		data, err := os.ReadFile(*configPath)
		if err != nil {
			return err
		}
		cfg, err := u2net.ParseConfig(data)
		if err != nil {
			return fmt.Errorf("%s: %w", *configPath, err)
		}
		if m, err = u2net.New(cfg, 0); err != nil {
			return err
		}
	case *configPath == "" && fs.NArg() == 1:
		var err error
		if m, err = u2net.Load(fs.Arg(0)); err != nil {
			return err
		}
	default:
		return usageError("give one model file, or --config CONFIG.json")
	}
	counts := m.Counts()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Config u2net.Config      `json:"config"`
			Counts u2net.ParamCounts `json:"parameters"`
		}{m.Config, counts})
	}
	c := m.Config
	fmt.Fprintf(stdout, "mode %s, base channels %d, pools per axis %v (%d levels), upsample %s, deep supervision %v, residual %v\n",
		c.Mode, c.BaseChannels, c.PoolsPerAxis, c.Levels(), c.Upsample, c.DeepSupervision, c.Residual)
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "parameters\tcount\tshare\t")
	pct := func(n int) string { return fmt.Sprintf("%.2f%%", 100*float64(n)/float64(counts.Total)) }
	fmt.Fprintf(tw, "total\t%d\t%s\t\n", counts.Total, pct(counts.Total))
	fmt.Fprintf(tw, "shared\t%d\t%s\t\n", counts.Shared, pct(counts.Shared))
	names := make([]string, 0, len(counts.PerDomain))
	for n := range counts.PerDomain {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, d := range c.Domains {
		plan := ""
		if len(d.Plan) > 0 {
			plan = ", with preprocessing plan"
			if p, err := predict.Plan(c, i); err == nil {
				if p.Patch != [3]int{} {
					plan += fmt.Sprintf(", trained at %d×%d×%d", p.Patch[0], p.Patch[1], p.Patch[2])
				}
				if len(p.KeepLargest) > 0 {
					var names []string
					for _, k := range p.KeepLargest {
						names = append(names, className(p.Labels, k))
					}
					plan += ", largest component of " + strings.Join(names, ", ")
				}
			}
		}
		fmt.Fprintf(tw, "domain %s (%d in, %d classes%s)\t%d\t%s\t\n", d.Name, d.InChannels, d.Classes, plan,
			counts.PerDomain[d.Name], pct(counts.PerDomain[d.Name]))
	}
	return tw.Flush()
}

// className names class k by the plan's labels where they do, else by k.
func className(labels []string, k int) string {
	if k < len(labels) {
		return labels[k]
	}
	return strconv.Itoa(k)
}

func runImport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("import", "--torch STATE.safetensors --config CONFIG.json --out MODEL.safetensors", stderr)
	torch := fs.String("torch", "", "the reference's state_dict saved as safetensors")
	configPath := fs.String("config", "", "config JSON of the same architecture")
	out := fs.String("out", "", "model file to write")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var missing []string
	for name, v := range map[string]string{"--torch": *torch, "--config": *configPath, "--out": *out} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 || fs.NArg() > 0 {
		sort.Strings(missing)
		return usageError("missing %s", strings.Join(missing, ", "))
	}
	data, err := os.ReadFile(*configPath)
	if err != nil {
		return err
	}
	cfg, err := u2net.ParseConfig(data)
	if err != nil {
		return fmt.Errorf("%s: %w", *configPath, err)
	}
	m, err := u2net.ImportTorch(*torch, cfg)
	if err != nil {
		return err
	}
	if err := m.Save(*out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %d parameters\n", *out, m.Counts().Total)
	return nil
}

func runExport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", "--model MODEL.safetensors --torch STATE.safetensors [--config CONFIG.json]", stderr)
	model := fs.String("model", "", "model file to export")
	torch := fs.String("torch", "", "state_dict to write, in safetensors (keys as the reference's PyTorch modules name them)")
	configPath := fs.String("config", "", "also write the model's config JSON here (import reads it back)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *model == "" || *torch == "" || fs.NArg() > 0 {
		return usageError("--model and --torch are required")
	}
	m, err := u2net.Load(*model)
	if err != nil {
		return err
	}
	if err := m.ExportTorch(*torch); err != nil {
		return fmt.Errorf("%s: %w", *model, err)
	}
	if *configPath != "" {
		if err := train.WriteJSON(*configPath, m.Config); err != nil {
			return fmt.Errorf("--config: %w", err)
		}
	}
	fmt.Fprintf(stdout, "wrote %s: %d tensors, %d parameters\n", *torch, len(m.Params), m.Counts().Total)
	return nil
}

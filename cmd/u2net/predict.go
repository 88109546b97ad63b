package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/u2net-vk/u2net/u2net"
	"github.com/u2net-vk/u2net/u2net/dataset"
	"github.com/u2net-vk/u2net/u2net/nifti"
	"github.com/u2net-vk/u2net/u2net/predict"
	"github.com/u2net-vk/u2net/u2net/report"
	"github.com/u2net-vk/u2net/u2net/train"
)

func init() {
	register(command{name: "predict", short: "segment NIfTI images with a trained model", run: runPredict})
}

func runPredict(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("predict", "--model M [--model M ...] --domain NAME --input FILE|DIR --output FILE|DIR", stderr)
	var modelPaths listFlag
	fs.Var(&modelPaths, "model", "model file; repeat to average the probabilities of several (an ensemble of folds or seeds)")
	domain := fs.String("domain", "", "domain of the images")
	input := fs.String("input", "", "NIfTI image, or a folder of them")
	output := fs.String("output", "", "label map to write, or a folder (for a folder input)")
	probs := fs.String("probabilities", "", "also write the softmax as a 4D float NIfTI (single input only)")
	preview := fs.String("preview", "", "also write a PNG with three slices and the labels (single input only)")
	device := fs.String("device", "", "device index, name or cpu")
	var memoryLimit memoryLimitFlag
	fs.Var(&memoryLimit, "memory-limit", "cap on the memory used for tensors, e.g. 8GiB (predict then uses smaller windows); default: half the host's memory on the CPU engine and CPU Vulkan devices, no cap on GPUs; 0: no cap")
	kernels := addKernelFlag(fs)
	patch := fs.String("patch", "", "sliding-window size D,H,W (default: the patch the model was trained with, as its plan records it; or one window)")
	overlap := fs.Float64("overlap", 0.5, "overlap of neighbouring windows")
	batch := fs.Int("batch", 2, "windows per forward pass")
	mirror := fs.Bool("mirror", false, "test-time augmentation by mirroring")
	split := fs.String("split", "", "a training run's split.json: with a folder --input (the dataset's imagesTr), predict only the cases that run validated on for --domain (cross-validation: each fold's model its own fold); or the reference implementation's fold_splits.json, with --fold")
	fold := fs.Int("fold", 0, "with a reference fold file as --split, the fold whose validation cases to predict")
	largest := fs.String("largest-component", "", `keep only the largest connected component (26-connected) of these classes, "all", "none" or label values or names separated by commas; their other voxels become background (for structures of one piece: an organ, not a vessel tree or scattered lesions); default: the classes for which training found it raised the validation Dice, as the model's plan records (every model's, for an ensemble)`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := kernels.check(); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageError("unexpected arguments %v", fs.Args())
	case len(modelPaths) == 0 || *domain == "" || *input == "" || *output == "":
		return usageError("--model, --domain, --input and --output are required")
	case *overlap < 0 || *overlap >= 1:
		return usageError("--overlap %g: want [0, 1)", *overlap)
	case *batch < 1:
		return usageError("--batch %d: want at least 1", *batch)
	}
	opt := predict.Options{Overlap: *overlap, Batch: *batch, Mirror: *mirror}
	if *patch != "" {
		p, err := parseTriple("--patch", *patch)
		if err != nil {
			return err
		}
		opt.Patch = p
	}
	models, doms, classNames, err := loadEnsemble(modelPaths, *domain, opt.Patch)
	if err != nil {
		return err
	}
	if *largest != "" && *largest != "none" {
		classes := models[0].Config.Domains[doms[0]].Classes
		if opt.KeepLargest, err = parseClasses(*largest, classes, classNames); err != nil {
			return usageError("--largest-component: %v", err)
		}
	}
	var only []string
	if *split != "" {
		if only, err = validationCases(*split, *domain, *input, *fold); err != nil {
			return err
		}
	}
	pairs, err := inputPairs(*input, *output, only)
	if err != nil {
		return err
	}
	if len(pairs) > 1 && (*probs != "" || *preview != "") {
		return usageError("--probabilities and --preview take a single --input file")
	}
	log := newLogger(stderr)
	opt.Log = log
	e, err := openEngine(*device, memoryLimit, log)
	if err != nil {
		return err
	}
	defer e.Close()
	if err := kernels.apply(e, forPrediction, log); err != nil {
		return err
	}
	members := make([]predict.Member, len(models))
	for i, m := range models {
		net, err := u2net.NewNet(m, e)
		if err != nil {
			return err
		}
		defer net.Close()
		members[i] = predict.Member{Net: net, Dom: doms[i]}
	}
	if *largest == "" {
		if opt.KeepLargest, err = predict.PlannedKeepLargest(members); err != nil {
			return err
		}
		if len(opt.KeepLargest) > 0 {
			log.Info("keeping only the largest connected component of some classes, as the model's plan records (--largest-component none keeps all)",
				"classes", opt.KeepLargest)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	for _, p := range pairs {
		start := time.Now()
		vol, err := nifti.ReadFile(p[0])
		if err != nil {
			return err
		}
		out, err := predict.Ensemble(ctx, members, vol, opt)
		if err != nil {
			return fmt.Errorf("%s: %w", p[0], err)
		}
		if err := nifti.WriteLabelsLike(p[1], &vol.Header, out.Labels); err != nil {
			return err
		}
		if *probs != "" {
			if err := nifti.WriteLike(*probs, &vol.Header, out.Classes, out.Probs, nifti.Float32); err != nil {
				return err
			}
		}
		if *preview != "" {
			s := vol.Shape
			if err := report.Preview(*preview, vol.Data[:s[1]*s[2]*s[3]], out.Labels, [3]int{s[1], s[2], s[3]}, vol.Header.SpacingDHW()); err != nil {
				return err
			}
		}
		w := out.Window
		how := fmt.Sprintf("%d window(s) of %d×%d×%d", out.Windows, w[0], w[1], w[2])
		if len(members) > 1 {
			how = fmt.Sprintf("%d models, %d windows in all", len(members), out.Windows)
		}
		fmt.Fprintf(stdout, "%s -> %s (%s, %.1f s): %s\n", p[0], p[1], how, time.Since(start).Seconds(),
			classVolumes(out.Labels, out.Classes, vol.Header.Spacing(), classNames))
	}
	return nil
}

// classVolumes lists the volume of each foreground class of a label map in
// millilitres, named as the model's plan names them.
func classVolumes(labels []uint8, classes int, spacing [3]float64, names []string) string {
	counts := make([]int, classes)
	for _, l := range labels {
		if int(l) < classes {
			counts[l]++
		}
	}
	ml := spacing[0] * spacing[1] * spacing[2] / 1000 // mm³ per voxel, in mL
	parts := make([]string, 0, classes-1)
	for k := 1; k < classes; k++ {
		parts = append(parts, fmt.Sprintf("%s %.4g mL", className(names, k), float64(counts[k])*ml))
	}
	return strings.Join(parts, ", ")
}

// parseClasses reads a list of foreground classes of a domain of classes
// classes named names (nil if unnamed): "all", or label values or names
// separated by commas.
func parseClasses(list string, classes int, names []string) ([]uint8, error) {
	if strings.TrimSpace(list) == "all" {
		var all []uint8
		for c := 1; c < classes; c++ {
			all = append(all, uint8(c))
		}
		return all, nil
	}
	var out []uint8
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		c := slices.Index(names, f)
		if c < 0 {
			v, err := strconv.Atoi(f)
			if err != nil {
				known := "label values"
				if len(names) > 0 {
					known = fmt.Sprintf("names %s or values", strings.Join(names[1:], ", "))
				}
				return nil, fmt.Errorf("%q is not a class (want all, or %s 1..%d)", f, known, classes-1)
			}
			c = v
		}
		if c < 1 || c >= classes {
			return nil, fmt.Errorf("class %d: the domain's foreground classes are 1..%d", c, classes-1)
		}
		out = append(out, uint8(c))
	}
	return out, nil
}

// loadEnsemble loads the --model files and finds the domain in each; they
// must agree on its classes (and on their names, where their plans give
// them, which it returns), and a --patch must suit each.
func loadEnsemble(paths []string, domain string, patch [3]int) ([]*u2net.Model, []int, []string, error) {
	var models []*u2net.Model
	var doms []int
	var labels []string // of the first model whose plan names them
	var labelsFrom string
	for _, path := range paths {
		m, err := u2net.Load(path)
		if err != nil {
			return nil, nil, nil, err
		}
		dom, err := m.Config.DomainIndex(domain)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--domain: %s: %w", path, err)
		}
		if patch != [3]int{} {
			if err := m.Config.CheckInputSize(patch); err != nil {
				return nil, nil, nil, fmt.Errorf("--patch: %s: %w", path, err)
			}
		}
		d := m.Config.Domains[dom]
		if len(models) > 0 {
			d0 := models[0].Config.Domains[doms[0]]
			if d.Classes != d0.Classes {
				return nil, nil, nil, fmt.Errorf("--model: domain %s has %d classes in %s but %d in %s", domain, d.Classes, path, d0.Classes, paths[0])
			}
			if d.InChannels != d0.InChannels {
				return nil, nil, nil, fmt.Errorf("--model: domain %s takes %d channel(s) in %s but %d in %s", domain, d.InChannels, path, d0.InChannels, paths[0])
			}
		}
		plan, err := predict.Plan(m.Config, dom)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		if plan != nil && len(plan.Labels) > 0 {
			if labels == nil {
				labels, labelsFrom = plan.Labels, path
			} else if !slices.Equal(labels, plan.Labels) {
				return nil, nil, nil, fmt.Errorf("--model: domain %s labels %q in %s but %q in %s", domain, plan.Labels, path, labels, labelsFrom)
			}
		}
		models, doms = append(models, m), append(doms, dom)
	}
	return models, doms, labels, nil
}

// validationCases reads the IDs of the cases a split file validates for
// domain: a run's split.json, or a reference fold file whose dataset is the
// folder above input (a dataset's imagesTr).
func validationCases(path, domain, input string, fold int) ([]string, error) {
	folder := filepath.Base(filepath.Dir(filepath.Clean(input)))
	ids, err := train.ValidationCases(path, domain, folder, fold)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("--split %s validates no case of domain %s", path, domain)
	}
	return ids, nil
}

// inputPairs lists (image, output) paths: one file, or every NIfTI file of
// a folder into an output folder under the same names; with only, the
// files of a folder named by those case IDs, each of which must be there.
func inputPairs(input, output string, only []string) ([][2]string, error) {
	st, err := os.Stat(input)
	if err != nil {
		return nil, fmt.Errorf("--input: %w", err)
	}
	if only != nil && !st.IsDir() {
		return nil, usageError("--split picks cases from a folder: --input %s is a file", input)
	}
	if !st.IsDir() {
		if err := checkOutputFolder("output", output); err != nil {
			return nil, err
		}
		return [][2]string{{input, output}}, nil
	}
	entries, err := os.ReadDir(input)
	if err != nil {
		return nil, fmt.Errorf("--input: %w", err)
	}
	wanted := map[string]bool{}
	for _, id := range only {
		wanted[id] = true
	}
	var pairs [][2]string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !(strings.HasSuffix(n, ".nii") || strings.HasSuffix(n, ".nii.gz")) || strings.HasPrefix(n, ".") {
			continue
		}
		if only != nil {
			id := dataset.CaseID(n)
			if !wanted[id] {
				continue
			}
			delete(wanted, id)
		}
		pairs = append(pairs, [2]string{filepath.Join(input, n), filepath.Join(output, n)})
	}
	if len(wanted) > 0 {
		missing := slices.Sorted(maps.Keys(wanted))
		return nil, fmt.Errorf("--input: %s lacks the validation case(s) %s of --split", input, strings.Join(missing, ", "))
	}
	if len(pairs) == 0 {
		return nil, fmt.Errorf("--input: %s holds no .nii or .nii.gz files", input)
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i][0] < pairs[j][0] })
	if err := os.MkdirAll(output, 0o755); err != nil {
		return nil, fmt.Errorf("--output: %w", err)
	}
	return pairs, nil
}

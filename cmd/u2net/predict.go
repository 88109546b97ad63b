package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/u2net-vk/u2net/u2net"
	"github.com/u2net-vk/u2net/u2net/nifti"
	"github.com/u2net-vk/u2net/u2net/predict"
	"github.com/u2net-vk/u2net/u2net/report"
)

func init() {
	register(command{name: "predict", short: "segment NIfTI images with a trained model", run: runPredict})
}

func runPredict(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("predict", "--model M --domain NAME --input FILE|DIR --output FILE|DIR", stderr)
	modelPath := fs.String("model", "", "model file")
	domain := fs.String("domain", "", "domain of the images")
	input := fs.String("input", "", "NIfTI image, or a folder of them")
	output := fs.String("output", "", "label map to write, or a folder (for a folder input)")
	probs := fs.String("probabilities", "", "also write the softmax as a 4D float NIfTI (single input only)")
	preview := fs.String("preview", "", "also write a PNG with three slices and the labels (single input only)")
	device := fs.String("device", "", "device index, name or cpu")
	var memoryLimit memoryLimitFlag
	fs.Var(&memoryLimit, "memory-limit", "cap on the memory used for tensors, e.g. 8GiB (predict then uses smaller windows); default: half the host's memory on the CPU engine and CPU Vulkan devices, no cap on GPUs; 0: no cap")
	patch := fs.String("patch", "", "sliding-window size D,H,W (default: the patch the model was trained with, as its plan records it; or one window)")
	overlap := fs.Float64("overlap", 0.5, "overlap of neighbouring windows")
	batch := fs.Int("batch", 2, "windows per forward pass")
	mirror := fs.Bool("mirror", false, "test-time augmentation by mirroring")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageError("unexpected arguments %v", fs.Args())
	case *modelPath == "" || *domain == "" || *input == "" || *output == "":
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
	m, err := u2net.Load(*modelPath)
	if err != nil {
		return err
	}
	dom, err := m.Config.DomainIndex(*domain)
	if err != nil {
		return fmt.Errorf("--domain: %w", err)
	}
	if opt.Patch != [3]int{} {
		if err := m.Config.CheckInputSize(opt.Patch); err != nil {
			return fmt.Errorf("--patch: %w", err)
		}
	}
	pairs, err := inputPairs(*input, *output)
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
	net, err := u2net.NewNet(m, e)
	if err != nil {
		return err
	}
	defer net.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	for _, p := range pairs {
		start := time.Now()
		vol, err := nifti.ReadFile(p[0])
		if err != nil {
			return err
		}
		out, err := predict.Volume(ctx, net, dom, vol, opt)
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
		fmt.Fprintf(stdout, "%s -> %s (%d window(s) of %d×%d×%d, %.1f s)\n", p[0], p[1], out.Windows, w[0], w[1], w[2],
			time.Since(start).Seconds())
	}
	return nil
}

// inputPairs lists (image, output) paths: one file, or every NIfTI file of
// a folder into an output folder under the same names.
func inputPairs(input, output string) ([][2]string, error) {
	st, err := os.Stat(input)
	if err != nil {
		return nil, fmt.Errorf("--input: %w", err)
	}
	if !st.IsDir() {
		if dir := filepath.Dir(output); dir != "." {
			if _, err := os.Stat(dir); err != nil {
				return nil, fmt.Errorf("--output: folder %s: %w", dir, err)
			}
		}
		return [][2]string{{input, output}}, nil
	}
	entries, err := os.ReadDir(input)
	if err != nil {
		return nil, fmt.Errorf("--input: %w", err)
	}
	var pairs [][2]string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !(strings.HasSuffix(n, ".nii") || strings.HasSuffix(n, ".nii.gz")) || strings.HasPrefix(n, ".") {
			continue
		}
		pairs = append(pairs, [2]string{filepath.Join(input, n), filepath.Join(output, n)})
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

package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/u2net-vk/u2net/u2net"
	"github.com/u2net-vk/u2net/u2net/augment"
	"github.com/u2net-vk/u2net/u2net/dataset"
	"github.com/u2net-vk/u2net/u2net/metrics"
	"github.com/u2net-vk/u2net/u2net/nifti"
	"github.com/u2net-vk/u2net/u2net/predict"
	"github.com/u2net-vk/u2net/u2net/report"
	"github.com/u2net-vk/u2net/u2net/synth"
	"github.com/u2net-vk/u2net/u2net/train"
)

func init() {
	register(command{name: "demo", short: "synthesize domains, train a universal model, predict and evaluate", run: runDemo})
}

// domainScore is one domain's entry of metrics.json.
type domainScore struct {
	MeanForegroundDice float64            `json:"mean_foreground_dice"`
	Dice               map[string]float64 `json:"dice"`
	HD95               map[string]float64 `json:"hd95_mm,omitempty"`
	Cases              int                `json:"cases"`
}

func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "--out DIR", stderr)
	out := fs.String("out", "", "folder for the data, run, predictions, previews and metrics.json")
	device := fs.String("device", "", "device index, name or cpu (default: the best found)")
	seed := fs.Uint64("seed", 1, "seed of the data and the training")
	epochs := fs.Int("epochs", 10, "training epochs")
	steps := fs.Int("steps-per-epoch", 60, "training steps per epoch")
	base := fs.Int("base-channels", 12, "channels of the first level")
	size := fs.Int("size", 32, "in-plane size of the synthetic volumes")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		return usageError("give --out DIR and nothing else")
	}
	if entries, err := os.ReadDir(*out); err == nil && len(entries) > 0 {
		return fmt.Errorf("--out %s exists and is not empty; the demo writes into a new folder", *out)
	}
	start := time.Now()
	log := newLogger(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dataDir := filepath.Join(*out, "data")
	infos, err := synth.Write(dataDir, synth.Config{Seed: *seed, Cases: 12, TestCases: 4, Size: *size})
	if err != nil {
		return err
	}
	var dirs []string
	for _, in := range infos {
		dirs = append(dirs, in.Dir)
	}
	log.Info("synthesized", "domains", len(infos), "folder", dataDir)

	e, err := openEngine(*device, memoryLimitFlag{}, log)
	if err != nil {
		return err
	}
	defer e.Close()
	// The demo trains a few hundred steps: light augmentation (mirroring,
	// mild rotation and scaling, gamma) lets it converge in that time.
	aug := augment.DefaultParams()
	aug.RotateProb, aug.RotateMax = 0.1, [3]float64{0.26, 0.26, 0.26}
	aug.ScaleProb, aug.ScaleRange = 0.1, [2]float64{0.85, 1.15}
	aug.NoiseProb = 0.05
	runDir := filepath.Join(*out, "run")
	opt := train.Options{
		Data: dirs, Out: runDir, Mode: u2net.ModeUniversal, Epochs: *epochs, StepsPerEpoch: *steps,
		Patch: [3]int{16, 32, 32}, Batch: 2, BaseChannels: *base, Pools: [3]int{-1, -1, -1},
		Seed: *seed, Optimizer: "adam", LR: 2e-3, PolyDecay: true, ValEvery: 2, ValFraction: 0.17, Augment: &aug, DeepSupervisionLoss: true,
	}
	res, err := train.Run(ctx, opt, e, log, terminal(stderr))
	if err != nil {
		return err
	}
	if res.Stopped {
		return fmt.Errorf("interrupted; the run so far is in %s", runDir)
	}

	m, err := u2net.Load(filepath.Join(runDir, train.ModelFile))
	if err != nil {
		return err
	}
	net, err := u2net.NewNet(m, e)
	if err != nil {
		return err
	}
	defer net.Close()
	scores := map[string]domainScore{}
	for _, dir := range dirs {
		s, err := evaluateDomain(ctx, net, dir, *out)
		if err != nil {
			return err
		}
		ds, _ := dataset.Open(dir)
		scores[ds.Name] = s
	}
	if err := train.WriteJSON(filepath.Join(*out, "metrics.json"), scores); err != nil {
		return err
	}
	printScores(stdout, scores)
	fmt.Fprintf(stdout, "\ndevice %s, %s; results in %s (metrics.json, predictions/, previews/, run/progress.png)\n",
		e.Name(), time.Since(start).Round(time.Second), *out)
	return nil
}

// evaluateDomain predicts every test case of a dataset, writes the label
// maps and a preview, and scores them against labelsTs.
func evaluateDomain(ctx context.Context, net *u2net.Net, dir, out string) (domainScore, error) {
	ds, err := dataset.Open(dir)
	if err != nil {
		return domainScore{}, err
	}
	dom, err := net.Model.Config.DomainIndex(ds.Name)
	if err != nil {
		return domainScore{}, err
	}
	predDir := filepath.Join(out, "predictions", ds.Name)
	if err := os.MkdirAll(predDir, 0o755); err != nil {
		return domainScore{}, err
	}
	if err := os.MkdirAll(filepath.Join(out, "previews"), 0o755); err != nil {
		return domainScore{}, err
	}
	classes := make([]int, 0, ds.NumClasses()-1)
	for k := 1; k < ds.NumClasses(); k++ {
		classes = append(classes, k)
	}
	score := domainScore{Dice: map[string]float64{}, HD95: map[string]float64{}}
	sumDice := map[int]float64{}
	sumHD, nHD := map[int]float64{}, map[int]int{}
	// As predict does: the classes whose largest component training chose.
	keep, err := predict.PlannedKeepLargest([]predict.Member{{Net: net, Dom: dom}})
	if err != nil {
		return score, err
	}
	for i, c := range ds.Test {
		if c.Label == "" {
			continue
		}
		s, err := ds.Load(c)
		if err != nil {
			return score, err
		}
		o, err := predict.Volume(ctx, net, dom, s.Image, predict.Options{Batch: 2, Mirror: true, KeepLargest: keep})
		if err != nil {
			return score, fmt.Errorf("%s case %s: %w", ds.Name, c.ID, err)
		}
		if err := nifti.WriteLabelsLike(filepath.Join(predDir, filepath.Base(c.Image)), &s.Image.Header, o.Labels); err != nil {
			return score, err
		}
		sh := s.Image.Shape
		shape := [3]int{sh[1], sh[2], sh[3]}
		if i == 0 {
			err := report.Preview(filepath.Join(out, "previews", ds.Name+".png"), s.Image.Data[:shape[0]*shape[1]*shape[2]], o.Labels, shape, s.Image.Header.SpacingDHW())
			if err != nil {
				return score, err
			}
		}
		rs, err := metrics.Compare(o.Labels, s.Label, shape, s.Image.Header.SpacingDHW(), classes)
		if err != nil {
			return score, err
		}
		for _, r := range rs {
			sumDice[r.Class] += r.Dice
			if !math.IsNaN(r.HD95) {
				sumHD[r.Class] += r.HD95
				nHD[r.Class]++
			}
		}
		score.Cases++
	}
	if score.Cases == 0 {
		return score, fmt.Errorf("%s has no test cases with labels (labelsTs)", ds.Name)
	}
	for _, k := range classes {
		name := ds.Labels[k]
		score.Dice[name] = sumDice[k] / float64(score.Cases)
		score.MeanForegroundDice += score.Dice[name] / float64(len(classes))
		if nHD[k] > 0 {
			score.HD95[name] = sumHD[k] / float64(nHD[k])
		}
	}
	return score, nil
}

func printScores(w io.Writer, scores map[string]domainScore) {
	names := make([]string, 0, len(scores))
	for n := range scores {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "domain\tcases\tmean foreground Dice\tper class\t")
	for _, n := range names {
		s := scores[n]
		var parts []string
		for c, d := range s.Dice {
			parts = append(parts, fmt.Sprintf("%s %.3f (HD95 %.1f mm)", c, d, s.HD95[c]))
		}
		sort.Strings(parts)
		fmt.Fprintf(tw, "%s\t%d\t%.3f\t%s\t\n", n, s.Cases, s.MeanForegroundDice, strings.Join(parts, ", "))
	}
	tw.Flush()
}

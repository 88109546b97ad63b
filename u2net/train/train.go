// Package train trains a U²-Net over several Decathlon datasets: it plans
// and caches the preprocessing, builds augmented batches ahead of the steps
// on the host's cores, steps through the domains round-robin, validates on
// held-out cases (a share of each dataset, or one fold of a fixed K-fold
// split), and keeps the best model and an exactly resumable checkpoint.
package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/u2net"
	"github.com/u2net-vk/u2net/u2net/augment"
	"github.com/u2net-vk/u2net/u2net/dataset"
	"github.com/u2net-vk/u2net/u2net/internal/par"
	"github.com/u2net-vk/u2net/u2net/metrics"
	"github.com/u2net-vk/u2net/u2net/predict"
	"github.com/u2net-vk/u2net/u2net/preprocess"
	"github.com/u2net-vk/u2net/u2net/report"
	"github.com/u2net-vk/u2net/u2net/sample"
)

// Files in a run folder.
const (
	ModelFile      = "model.safetensors"      // best model, with preprocessing plans
	CheckpointFile = "checkpoint.safetensors" // latest state, with optimiser state
	MetricsFile    = "metrics.jsonl"
	ProgressFile   = "progress.png"
	OptionsFile    = "options.json"
	SplitFile      = "split.json" // each domain's training and validation case IDs
)

// Options configure a training run.
type Options struct {
	Data          []string // Decathlon dataset folders, one domain each
	Out           string   // run folder
	Mode          string
	Upsample      string
	Epochs        int
	StepsPerEpoch int
	Patch         [3]int // zero: derived from the datasets' median shapes
	Batch         int
	BaseChannels  int
	Pools         [3]int // all −1: derived from the patch
	Seed          uint64
	Optimizer     string  // "adam" (default) or "sgd" (Nesterov momentum 0.99, poly decay)
	LR            float64 // zero: 3e-4 for Adam, 1e-2 for SGD
	// PolyDecay decays the learning rate as (1 − step/total)^0.9; SGD always
	// decays, Adam only when this is set.
	PolyDecay   bool
	WeightDecay float64
	ValEvery    int     // validate every this many epochs; 0: only after the last
	ValFraction float64 // share of each dataset's training cases held out
	// Folds, when at least 2, splits each dataset's training cases into
	// this many folds and holds out fold Fold (from 0) in place of
	// ValFraction. The folds of a dataset are the same for every run: the
	// runs of all folds hold out each case exactly once, and their models
	// make an ensemble for predict.
	Folds, Fold int
	// Split, when set, names a file that fixes each dataset's validation
	// cases, in place of Folds and ValFraction: a run's split.json
	// (domains by name), or a fold file of the reference implementation
	// (fold_splits.json: datasets by folder name, then "fold<Fold>", then
	// "train" and "val" case IDs), which reproduces its cross-validation.
	Split  string
	Resume bool
	// Init starts from a trained model; with FreezeShared only the
	// per-domain parameters of domains not in Init learn.
	Init         string
	FreezeShared bool
	// Cache is the folder of the preprocessing plans and preprocessed
	// cases ("": RUN/cache). Entries are keyed by the plan and the cases'
	// files, so runs on the same datasets (the folds of a
	// cross-validation) can share one and preprocess once.
	Cache string
	// Workers is the goroutines that plan and preprocess the datasets (0:
	// up to maxPreprocessWorkers, one per core) and, up to maxBatchWorkers
	// of them, build batches ahead of the steps.
	Workers int
	// DeepSupervisionLoss also trains each deep-supervision head against
	// down-sampled labels, weights halving per level (see u2net.Net).
	DeepSupervisionLoss bool
	// Augment sets the augmentation; nil means augment.DefaultParams().
	Augment *augment.Params
	// StopAfter stops this invocation at a step boundary after so many steps,
	// saving the checkpoint as an interruption does; 0: run to the end.
	StopAfter int
	// Kernels are the engine's kernel choices (ops.GPU.Kernels), which Run
	// records with the run: other choices round differently, so a run
	// resumed under others does not continue exactly.
	Kernels []string
}

// Record is one line of metrics.jsonl.
type Record = report.Record

// Result summarises a finished run.
type Result struct {
	Steps    int
	BestDice map[string]float64
	Stopped  bool // interrupted before the last epoch
}

// FormatDice lists Dice scores by domain name, in name order, to four
// decimals: "heart 0.8123, liver 0.9012".
func FormatDice(dice map[string]float64) string {
	parts := make([]string, 0, len(dice))
	for _, name := range slices.Sorted(maps.Keys(dice)) {
		parts = append(parts, fmt.Sprintf("%s %.4f", name, dice[name]))
	}
	return strings.Join(parts, ", ")
}

// domainData is one dataset prepared for training and validation.
type domainData struct {
	index  int // the domain's index in the model, found by name
	ds     *dataset.Dataset
	plan   *preprocess.Plan
	train  []*preprocess.Case
	val    []*preprocess.Case
	loader *augment.Loader
}

// Run trains on engine e. Progress, when not nil, shows a progress bar
// (pass a terminal); log receives the plain log lines.
func Run(ctx context.Context, opt Options, e ops.Engine, log *slog.Logger, progress io.Writer) (*Result, error) {
	if err := opt.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opt.Out, 0o755); err != nil {
		return nil, fmt.Errorf("run folder: %w", err)
	}
	doms, err := prepare(ctx, opt, log)
	if err != nil {
		return nil, err
	}
	opt.Kernels = nil
	if g, ok := e.(*ops.GPU); ok {
		opt.Kernels = g.Kernels()
	}
	if opt.Resume {
		resumeOptions(&opt, log)
	}
	derived := opt.Patch == [3]int{}
	opt.Patch = choosePatch(opt.Patch, doms)
	cfg, err := buildConfig(opt, doms)
	if err != nil {
		return nil, err
	}
	model, state, start, best, err := initialModel(opt, cfg, log)
	if err != nil {
		return nil, err
	}
	// A model started from (--init) may hold other domains, and in another
	// order than the data's: each dataset trains the domain of its name.
	for _, d := range doms {
		if d.index, err = model.Config.DomainIndex(d.ds.Name); err != nil {
			return nil, err
		}
	}
	net, err := u2net.NewNet(model, e)
	if err != nil {
		return nil, err
	}
	defer net.Close()
	net.FreezeShared = opt.FreezeShared
	net.DeepSupervisionLoss = opt.DeepSupervisionLoss
	net.Opt = optimizer(opt)
	if opt.Patch, err = fitPatch(net, doms, opt, derived, log); err != nil {
		return nil, err
	}
	// The model's plans record the patch, which prediction then slides.
	for _, d := range doms {
		plan := *d.plan
		plan.Patch = opt.Patch
		if model.Config.Domains[d.index].Plan, err = json.Marshal(plan); err != nil {
			return nil, err
		}
	}
	if state != nil {
		if err := net.SetOptimizerState(state.State); err != nil {
			return nil, fmt.Errorf("resuming from %s: %w", CheckpointFile, err)
		}
		net.Step = start
	}
	for i, d := range doms {
		s, err := sample.New(d.train, opt.Patch, sample.Options{Seed: opt.Seed + uint64(i)*7919})
		if err != nil {
			return nil, fmt.Errorf("domain %s: %w", d.ds.Name, err)
		}
		if d.loader, err = augment.NewLoader(s, augment.LoaderConfig{
			BatchSize: opt.Batch, Params: augmentParams(opt), Seed: opt.Seed*31 + uint64(i),
		}); err != nil {
			return nil, err
		}
	}
	if err := WriteJSON(filepath.Join(opt.Out, OptionsFile), opt); err != nil {
		return nil, err
	}
	if err := WriteJSON(filepath.Join(opt.Out, SplitFile), splits(doms)); err != nil {
		return nil, err
	}
	attrs := []any{"device", e.Name(), "mode", cfg.Mode, "domains", len(doms), "patch", opt.Patch,
		"pools", cfg.PoolsPerAxis, "batch", opt.Batch, "parameters", model.Counts().Total, "start_step", start}
	// The activations and gradients of a step, which the domains share.
	if b, err := net.PlanBytes(doms[0].index, opt.Batch, opt.Patch, true); err == nil {
		attrs = append(attrs, "step_memory", fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)))
	}
	log.Info("training", attrs...)

	r := &runner{opt: opt, net: net, doms: doms, log: log, best: best, progress: progress}
	return r.loop(ctx, start)
}

func augmentParams(o Options) augment.Params {
	if o.Augment != nil {
		return *o.Augment
	}
	return augment.DefaultParams()
}

func (o *Options) validate() error {
	switch {
	case len(o.Data) == 0 && o.Init == "":
		return errors.New("no --data folder given")
	case o.Out == "":
		return errors.New("no --out run folder given")
	case o.Epochs < 1:
		return fmt.Errorf("--epochs %d must be at least 1", o.Epochs)
	case o.StepsPerEpoch < 1:
		return fmt.Errorf("--steps-per-epoch %d must be at least 1", o.StepsPerEpoch)
	case o.Batch < 1:
		return fmt.Errorf("--batch %d must be at least 1", o.Batch)
	case o.ValFraction < 0 || o.ValFraction >= 1:
		return fmt.Errorf("validation fraction %g must be in [0, 1)", o.ValFraction)
	case o.Folds < 0 || o.Folds == 1:
		return fmt.Errorf("--folds %d: want at least 2 (or 0 for a held-out fraction)", o.Folds)
	case o.Folds >= 2 && (o.Fold < 0 || o.Fold >= o.Folds):
		return fmt.Errorf("--fold %d out of range: with %d folds it is 0 to %d", o.Fold, o.Folds, o.Folds-1)
	case o.Folds == 0 && o.Split == "" && o.Fold != 0:
		return fmt.Errorf("--fold %d needs --folds or --split", o.Fold)
	case o.Split != "" && o.Folds != 0:
		return errors.New("--split and --folds both choose the validation cases: give one")
	case o.Fold < 0:
		return fmt.Errorf("--fold %d must not be negative", o.Fold)
	}
	for a, p := range o.Patch {
		if p < 0 || p > 1024 {
			return fmt.Errorf("--patch axis %d = %d out of range", a, p)
		}
	}
	if o.Optimizer == "" {
		o.Optimizer = "adam"
	}
	if o.Optimizer != "adam" && o.Optimizer != "sgd" {
		return fmt.Errorf("--optimizer %q: want adam or sgd", o.Optimizer)
	}
	return nil
}

// optimizer returns the optimiser for the options: the reference's Adam
// (3e-4, weight decay 5e-4) or SGD with Nesterov momentum.
func optimizer(o Options) u2net.Optimizer {
	opt := u2net.DefaultOptimizer()
	if o.Optimizer == "sgd" {
		opt = u2net.Optimizer{Kind: "sgd", LR: 1e-2, WeightDecay: 3e-5, Momentum: 0.99, Nesterov: true}
	}
	if o.LR > 0 {
		opt.LR = o.LR
	}
	if o.WeightDecay > 0 {
		opt.WeightDecay = o.WeightDecay
	}
	return opt
}

// prepare opens every dataset, plans its preprocessing, holds out validation
// cases and preprocesses everything through the cache.
func prepare(ctx context.Context, opt Options, log *slog.Logger) ([]*domainData, error) {
	cache := opt.Cache
	if cache == "" {
		cache = filepath.Join(opt.Out, "cache")
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = min(runtime.GOMAXPROCS(0), maxPreprocessWorkers)
	}
	var doms []*domainData
	for _, dir := range opt.Data {
		ds, err := dataset.Open(dir)
		if err != nil {
			return nil, err
		}
		plan, err := preprocess.NewPlan(ds, preprocess.PlanOptions{Workers: workers, CacheDir: cache})
		if err != nil {
			return nil, fmt.Errorf("planning %s: %w", dir, err)
		}
		trainCases, valCases, err := holdOut(ds, opt)
		if err != nil {
			return nil, err
		}
		tr, err := plan.LoadAll(ctx, ds, trainCases, cache, workers)
		if err != nil {
			return nil, err
		}
		va, err := plan.LoadAll(ctx, ds, valCases, cache, workers)
		if err != nil {
			return nil, err
		}
		attrs := []any{"domain", ds.Name, "training", len(tr), "validation", len(va)}
		switch {
		case opt.Folds >= 2:
			attrs = append(attrs, "fold", fmt.Sprintf("%d of %d", opt.Fold, opt.Folds))
		case opt.Split != "":
			attrs = append(attrs, "split", opt.Split)
		}
		log.Info("dataset", append(attrs, "spacing", plan.TargetSpacing, "median_shape", plan.MedianShape)...)
		doms = append(doms, &domainData{ds: ds, plan: plan, train: tr, val: va})
	}
	return doms, nil
}

// foldSeed fixes the order in which cases are dealt into folds: the same
// for every run, whatever its seed.
const foldSeed = 0x5eed_f01d

// holdOut splits the training cases of ds into those trained on and those
// validated on, both in the dataset's order: with a split file, the cases
// it names; with folds, fold opt.Fold of a fixed shuffle (fold sizes differ
// by at most one); otherwise the last opt.ValFraction of them (at least one
// of two or more).
func holdOut(ds *dataset.Dataset, opt Options) (train, val []dataset.Case, err error) {
	cases := ds.Training
	n := len(cases)
	held := make([]bool, n)
	switch {
	case opt.Split != "":
		ids, err := ValidationCases(opt.Split, ds.Name, filepath.Base(filepath.Clean(ds.Root)), opt.Fold)
		if err != nil {
			return nil, nil, err
		}
		unknown := map[string]bool{}
		for _, id := range ids {
			unknown[id] = true
		}
		for i, c := range cases {
			held[i] = unknown[c.ID]
			delete(unknown, c.ID)
		}
		if len(unknown) > 0 {
			return nil, nil, fmt.Errorf("--split %s: dataset %s has no training case %s", opt.Split, ds.Root, strings.Join(slices.Sorted(maps.Keys(unknown)), ", "))
		}
	case opt.Folds >= 2:
		if n < opt.Folds {
			return nil, nil, fmt.Errorf("dataset %s: %d training cases cannot make %d folds", ds.Root, n, opt.Folds)
		}
		perm := rand.New(rand.NewPCG(foldSeed, uint64(n))).Perm(n)
		for _, i := range perm[opt.Fold*n/opt.Folds : (opt.Fold+1)*n/opt.Folds] {
			held[i] = true
		}
	case n >= 2 && opt.ValFraction > 0:
		nval := max(1, int(math.Round(opt.ValFraction*float64(n))))
		for i := n - nval; i < n; i++ {
			held[i] = true
		}
	}
	for i, c := range cases {
		if held[i] {
			val = append(val, c)
		} else {
			train = append(train, c)
		}
	}
	return train, val, nil
}

// ValidationCases returns the validation case IDs that the split file path
// gives a dataset: a run's split.json names it by domain, a fold file of the
// reference implementation (fold_splits.json) by its folder's name and the
// fold.
func ValidationCases(path, domain, folder string, fold int) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--split: %w", err)
	}
	var ours []Split
	if err := json.Unmarshal(raw, &ours); err == nil {
		var names []string
		for _, s := range ours {
			if s.Domain == domain {
				return s.Validation, nil
			}
			names = append(names, s.Domain)
		}
		return nil, fmt.Errorf("--split %s has no domain %s (it has %s)", path, domain, strings.Join(names, ", "))
	}
	var ref map[string]map[string]struct {
		Train []string `json:"train"`
		Val   []string `json:"val"`
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		return nil, fmt.Errorf("--split %s: neither a run's split.json nor a fold file of the reference: %w", path, err)
	}
	folds, ok := ref[folder]
	if !ok {
		return nil, fmt.Errorf("--split %s has no dataset %s (its keys are dataset folder names)", path, folder)
	}
	f, ok := folds[fmt.Sprint("fold", fold)]
	if !ok {
		return nil, fmt.Errorf("--split %s has no fold%d for dataset %s", path, fold, folder)
	}
	return f.Val, nil
}

// Split names the cases of one domain that a run trains and validates on.
type Split struct {
	Domain     string   `json:"domain"`
	Training   []string `json:"training"`
	Validation []string `json:"validation"`
}

func splits(doms []*domainData) []Split {
	ids := func(cases []*preprocess.Case) []string {
		out := make([]string, len(cases))
		for i, c := range cases {
			out[i] = c.ID
		}
		return out
	}
	var out []Split
	for _, d := range doms {
		out = append(out, Split{Domain: d.ds.Name, Training: ids(d.train), Validation: ids(d.val)})
	}
	return out
}

// choosePatch returns the patch: as given, or per axis the smallest median
// shape of the domains rounded down to a multiple of 16, within 16..128.
func choosePatch(p [3]int, doms []*domainData) [3]int {
	if p != [3]int{} {
		return p
	}
	for a := range p {
		m := math.MaxInt
		for _, d := range doms {
			m = min(m, d.plan.MedianShape[a])
		}
		p[a] = min(128, max(16, m/16*16))
	}
	return p
}

// fitPatch builds the training graphs for the patch before any data is
// prepared, so that a patch the engine cannot hold fails at once. A patch
// derived from the data (not given) is shrunk until the engine holds it,
// with a warning: the derived patch of a large dataset (up to 128 per
// axis) does not fit every device, lavapipe's 128 MiB bindings among them.
func fitPatch(net *u2net.Net, doms []*domainData, opt Options, derived bool, log *slog.Logger) ([3]int, error) {
	var indices []int
	for _, d := range doms {
		indices = append(indices, d.index)
	}
	reserve := func(s [3]int) error { return net.ReserveTraining(indices, opt.Batch, s) }
	if !derived {
		if err := reserve(opt.Patch); err != nil {
			return opt.Patch, fmt.Errorf("--patch %v, --batch %d: %w", opt.Patch, opt.Batch, err)
		}
		return opt.Patch, nil
	}
	fitted, err := predict.FitWindow(reserve, opt.Patch, net.Model.Config.TotalStride())
	if err != nil {
		return opt.Patch, fmt.Errorf("the patch derived from the data, --batch %d: %w", opt.Batch, err)
	}
	if fitted != opt.Patch {
		log.Warn("the engine cannot hold a training step at the patch derived from the data; using a smaller one",
			"patch", fmt.Sprint(opt.Patch), "fitted_patch", fmt.Sprint(fitted), "batch", opt.Batch)
	}
	return fitted, nil
}

// DerivePools returns the poolings per axis for a patch: as many halvings
// as keep at least 4 voxels per axis at the deepest level, at most 5, and
// only while the axis stays divisible.
func DerivePools(patch [3]int) [3]int {
	var pools [3]int
	for a, n := range patch {
		for pools[a] < 5 && n%2 == 0 && n/2 >= 4 {
			n /= 2
			pools[a]++
		}
	}
	return pools
}

func buildConfig(opt Options, doms []*domainData) (u2net.Config, error) {
	cfg := u2net.DefaultConfig()
	if opt.Mode != "" {
		cfg.Mode = opt.Mode
	}
	if opt.Upsample != "" {
		cfg.Upsample = opt.Upsample
	}
	if opt.BaseChannels > 0 {
		cfg.BaseChannels = opt.BaseChannels
	}
	cfg.PoolsPerAxis = opt.Pools
	if opt.Pools == [3]int{-1, -1, -1} || opt.Pools == [3]int{} {
		cfg.PoolsPerAxis = DerivePools(opt.Patch)
	}
	for _, d := range doms {
		plan, err := json.Marshal(d.plan)
		if err != nil {
			return cfg, err
		}
		cfg.Domains = append(cfg.Domains, u2net.Domain{
			Name: d.ds.Name, InChannels: d.ds.NumChannels(), Classes: d.ds.NumClasses(), Plan: plan,
		})
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	if err := cfg.CheckInputSize(opt.Patch); err != nil {
		return cfg, fmt.Errorf("--patch: %w", err)
	}
	return cfg, nil
}

// initialModel returns the model to start from: the checkpoint when
// resuming, a trained model with new domains added (Init), or a fresh one.
func initialModel(opt Options, cfg u2net.Config, log *slog.Logger) (*u2net.Model, *u2net.File, int, float64, error) {
	ckpt := filepath.Join(opt.Out, CheckpointFile)
	if opt.Resume {
		m, f, err := u2net.LoadFile(ckpt)
		if err != nil {
			return nil, nil, 0, 0, fmt.Errorf("--resume: %w", err)
		}
		if err := sameDomains(m.Config, cfg); err != nil {
			return nil, nil, 0, 0, fmt.Errorf("--resume: %s does not match the data: %w", ckpt, err)
		}
		step, err := strconv.Atoi(f.Meta["step"])
		if err != nil {
			return nil, nil, 0, 0, fmt.Errorf("--resume: %s has no step count", ckpt)
		}
		best, _ := strconv.ParseFloat(f.Meta["best_dice"], 64)
		log.Info("resuming", "checkpoint", ckpt, "step", step)
		return m, &f, step, best, nil
	}
	if _, err := os.Stat(ckpt); err == nil {
		return nil, nil, 0, 0, fmt.Errorf("%s already holds a run; use --resume to continue it or choose another --out", opt.Out)
	}
	if opt.Init != "" {
		m, err := u2net.Load(opt.Init)
		if err != nil {
			return nil, nil, 0, 0, fmt.Errorf("--init: %w", err)
		}
		for _, d := range cfg.Domains {
			if i, err := m.Config.DomainIndex(d.Name); err == nil {
				old := m.Config.Domains[i]
				if old.InChannels != d.InChannels || old.Classes != d.Classes {
					return nil, nil, 0, 0, fmt.Errorf("--init: domain %s has %d channels and %d classes in the model but %d and %d in the data",
						d.Name, old.InChannels, old.Classes, d.InChannels, d.Classes)
				}
				m.Config.Domains[i].Plan = d.Plan
				continue
			}
			if err := m.AddDomain(d, opt.Seed); err != nil {
				return nil, nil, 0, 0, err
			}
			log.Info("added domain", "domain", d.Name)
		}
		return m, nil, 0, 0, nil
	}
	m, err := u2net.New(cfg, opt.Seed)
	return m, nil, 0, 0, err
}

func sameDomains(a, b u2net.Config) error {
	if len(a.Domains) != len(b.Domains) {
		return fmt.Errorf("%d domains in the checkpoint, %d in the data", len(a.Domains), len(b.Domains))
	}
	for i := range a.Domains {
		x, y := a.Domains[i], b.Domains[i]
		if x.Name != y.Name || x.InChannels != y.InChannels || x.Classes != y.Classes {
			return fmt.Errorf("domain %d is %s (%d channels, %d classes) in the checkpoint and %s (%d, %d) in the data",
				i, x.Name, x.InChannels, x.Classes, y.Name, y.InChannels, y.Classes)
		}
	}
	return nil
}

// ReadOptions reads the options a run in folder out began with (its
// options file).
func ReadOptions(out string) (Options, error) {
	var opt Options
	data, err := os.ReadFile(filepath.Join(out, OptionsFile))
	if err == nil {
		err = json.Unmarshal(data, &opt)
	}
	return opt, err
}

// resumeOptions compares the options of a resumed run with those it began
// with (its options file) and warns of those that differ: the run then
// does not continue exactly. Without a patch given, the run takes its own
// (which may have been fitted to the device), as if given. A run without a
// readable options file keeps its options as given.
func resumeOptions(opt *Options, log *slog.Logger) {
	prev, err := ReadOptions(opt.Out)
	if err != nil {
		log.Warn("resuming without the run's options; the options given are taken as they are", "error", err)
		return
	}
	if opt.Patch == [3]int{} {
		opt.Patch = prev.Patch
	}
	// What a resumed run may change without changing its steps: where it
	// reads and writes (its cache included), how long it runs, how many
	// goroutines preprocess and augment.
	a, b := *opt, prev
	for _, o := range []*Options{&a, &b} {
		o.Data, o.Out, o.Epochs, o.ValEvery, o.Resume, o.Init, o.Workers, o.StopAfter, o.Cache = nil, "", 0, 0, false, "", 0, 0, ""
		aug := augmentParams(*o)
		o.Augment = &aug
	}
	var changed []string
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range va.NumField() {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			changed = append(changed, va.Type().Field(i).Name)
		}
	}
	if len(changed) > 0 {
		log.Warn("resuming with options other than the run began with: it does not continue exactly", "changed", strings.Join(changed, ", "))
	}
}

// WriteJSON writes v as indented JSON to path atomically (a temporary file
// renamed into place).
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

type runner struct {
	opt      Options
	net      *u2net.Net
	doms     []*domainData
	log      *slog.Logger
	best     float64
	progress io.Writer
	// spare holds the *stepBatch of steps done, whose buffers the next
	// batches are built in.
	spare sync.Pool
}

// loop runs the epochs from step start.
func (r *runner) loop(ctx context.Context, start int) (*Result, error) {
	opt := r.opt
	total := opt.Epochs * opt.StepsPerEpoch
	res := &Result{BestDice: map[string]float64{}}
	bar := newBar(r.progress, total, start)
	// The recorded loss is the mean over the epoch's steps (of this run).
	var lossSum float64
	var lossSteps int
	// The next steps' batches are built on the host while the device runs
	// this one; each depends only on its step, as when built in turn.
	ahead, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := r.batchWorkers()
	batches := par.Ordered(ahead, start, total-start, workers, workers, r.batch)
	// Each epoch's log line gives the wall time per step and the share of
	// it spent waiting for batches: a host too slow for its device shows.
	epochStart := time.Now()
	var waited time.Duration
	for step := start; step < total; step++ {
		var b *stepBatch
		ok := ctx.Err() == nil && (opt.StopAfter <= 0 || step-start < opt.StopAfter)
		if ok {
			t := time.Now()
			b, ok = <-batches
			waited += time.Since(t)
		}
		if !ok {
			r.log.Info("interrupted: saving the checkpoint", "step", step)
			res.Stopped = true
			res.Steps = step
			return res, r.checkpoint(step)
		}
		r.net.Opt.LR = r.lr(step, total)
		shape := b.Shape
		loss, err := r.net.TrainStep(r.doms[b.dom].index, shape[0], [3]int{shape[2], shape[3], shape[4]}, b.Image, b.labels)
		if err != nil {
			return nil, fmt.Errorf("step %d (%s): %w", step, r.doms[b.dom].ds.Name, err)
		}
		r.spare.Put(b) // TrainStep keeps neither slice
		bar.step(step+1, loss.Total())
		lossSum += loss.Total()
		lossSteps++
		epoch := (step + 1) / opt.StepsPerEpoch
		if (step+1)%opt.StepsPerEpoch != 0 {
			continue
		}
		rec := Record{Epoch: epoch, Step: step + 1, Loss: lossSum / float64(lossSteps), LR: r.net.Opt.LR}
		stepping := time.Since(epochStart)
		attrs := []any{"epoch", epoch, "step", step + 1, "loss", fmt.Sprintf("%.4f", rec.Loss),
			"ms_per_step", fmt.Sprintf("%.1f", float64(stepping.Microseconds())/1e3/float64(lossSteps)),
			"waiting_for_batches", fmt.Sprintf("%.0f%%", 100*waited.Seconds()/max(stepping.Seconds(), 1e-9))}
		lossSum, lossSteps, waited = 0, 0, 0
		if (opt.ValEvery > 0 && epoch%opt.ValEvery == 0) || epoch == opt.Epochs {
			valStart := time.Now()
			dice, keep, err := r.validate(ctx)
			attrs = append(attrs, "validation", time.Since(valStart).Round(time.Millisecond))
			if err != nil {
				return nil, err
			}
			rec.Dice = dice
			mean := meanOf(dice)
			if mean >= r.best || r.best == 0 {
				r.best = mean
				for k, v := range dice {
					res.BestDice[k] = v
				}
				if err := r.setKeepLargest(keep); err != nil {
					return nil, err
				}
				if err := r.saveBest(); err != nil {
					return nil, err
				}
			}
		}
		if err := r.record(rec); err != nil {
			return nil, err
		}
		if err := r.checkpoint(step + 1); err != nil {
			return nil, err
		}
		if rec.Dice != nil {
			attrs = append(attrs, "dice", FormatDice(rec.Dice))
		}
		r.log.Info("epoch", attrs...)
		epochStart = time.Now()
	}
	bar.finish()
	res.Steps = total
	return res, nil
}

// maxPreprocessWorkers bounds the cases read at once by default: each holds
// a whole image and its resampled copy (some 1 GB for a large CT).
const maxPreprocessWorkers = 8

// maxBatchWorkers bounds the batches built at once: each resamples its
// patches on all cores already, and every one ahead holds a batch.
const maxBatchWorkers = 4

func (r *runner) batchWorkers() int {
	w := r.opt.Workers
	if w <= 0 {
		w = runtime.GOMAXPROCS(0)
	}
	return min(w, maxBatchWorkers)
}

// stepBatch is one step's input: the domains take turns, each drawing its
// own batches in order.
type stepBatch struct {
	dom int // index into runner.doms
	augment.Batch
	labels []int32 // Batch.Label, as the engine takes them
}

// batch builds step's batch, in the buffers of a step done where there is
// one: at the reference setting a batch's image and labels take 36 MiB,
// whose pages new slices would fault in again every step.
func (r *runner) batch(step int) *stepBatch {
	b, _ := r.spare.Get().(*stepBatch)
	if b == nil {
		b = &stepBatch{}
	}
	b.dom = step % len(r.doms)
	r.doms[b.dom].loader.BatchInto(step/len(r.doms), &b.Batch)
	if cap(b.labels) < len(b.Label) {
		b.labels = make([]int32, len(b.Label))
	}
	b.labels = b.labels[:len(b.Label)]
	par.Ranges(len(b.Label), 1<<16, func(lo, hi int) {
		for i, l := range b.Label[lo:hi] {
			b.labels[lo+i] = int32(l)
		}
	})
	return b
}

// lr returns the learning rate of a step: constant for Adam unless
// PolyDecay, polynomial decay (power 0.9) for SGD.
func (r *runner) lr(step, total int) float64 {
	base := optimizer(r.opt).LR
	if r.opt.Optimizer == "sgd" || r.opt.PolyDecay {
		return base * math.Pow(1-float64(step)/float64(total), 0.9)
	}
	return base
}

func meanOf(m map[string]float64) float64 {
	if len(m) == 0 {
		return 0
	}
	s := 0.0
	for _, v := range m {
		s += v
	}
	return s / float64(len(m))
}

// validate predicts every held-out case with the sliding window and returns
// each domain's mean foreground Dice, and per domain the classes whose
// largest component alone scored better. Each case is scored on the host
// (Dice per class, as predicted and with only the class's largest
// component) while the device segments the next; the sums add the cases
// in order.
func (r *runner) validate(ctx context.Context) (map[string]float64, map[int][]int, error) {
	out := map[string]float64{}
	keep := map[int][]int{}
	for _, dd := range r.doms {
		if len(dd.val) == 0 {
			continue
		}
		classes := dd.ds.NumClasses()
		scores := make([]caseScore, len(dd.val))
		var wg sync.WaitGroup
		// At most one case per core waits to be scored, each holding its
		// labels.
		slots := make(chan struct{}, runtime.GOMAXPROCS(0))
		for i, c := range dd.val {
			labels, err := Segment(ctx, r.net, dd.index, c, r.opt.Patch, r.opt.Batch)
			if err != nil {
				wg.Wait()
				return nil, nil, fmt.Errorf("validating %s case %s: %w", dd.ds.Name, c.ID, err)
			}
			slots <- struct{}{}
			wg.Go(func() {
				scores[i] = scoreCase(labels, c, classes)
				<-slots
			})
		}
		wg.Wait()
		// Per class, the Dice summed over the cases as predicted and with
		// only the class's largest component kept.
		raw, largest := make([]float64, classes), make([]float64, classes)
		for i, sc := range scores {
			if sc.err != nil {
				return nil, nil, fmt.Errorf("validating %s case %s: %w", dd.ds.Name, dd.val[i].ID, sc.err)
			}
			for k := 1; k < classes; k++ {
				raw[k] += sc.raw[k]
				largest[k] += sc.largest[k]
			}
		}
		sum := 0.0
		for k := 1; k < classes; k++ {
			sum += raw[k]
			if largest[k] > raw[k] {
				keep[dd.index] = append(keep[dd.index], k)
			}
		}
		out[dd.ds.Name] = sum / float64(len(dd.val)*(classes-1))
	}
	return out, keep, nil
}

// caseScore is one validation case's Dice per class, as predicted and with
// only the class's largest component.
type caseScore struct {
	raw, largest []float64
	err          error
}

func scoreCase(labels []uint8, c *preprocess.Case, classes int) caseScore {
	sc := caseScore{raw: make([]float64, classes), largest: make([]float64, classes)}
	// A class's Dice sees only its own voxels, so one map with every
	// class's largest component kept serves them all.
	kept := slices.Clone(labels)
	all := make([]uint8, 0, classes-1)
	for k := 1; k < classes; k++ {
		all = append(all, uint8(k))
	}
	if _, sc.err = predict.KeepLargestComponents(kept, [3]int{c.Shape[1], c.Shape[2], c.Shape[3]}, all); sc.err != nil {
		return sc
	}
	for k := 1; k < classes; k++ {
		if sc.raw[k], sc.err = metrics.Dice(labels, c.Label, uint8(k)); sc.err != nil {
			return sc
		}
		if sc.largest[k], sc.err = metrics.Dice(kept, c.Label, uint8(k)); sc.err != nil {
			return sc
		}
	}
	return sc
}

// setKeepLargest records in the plans of the validated domains the classes
// whose largest component alone scored better (prediction's default).
func (r *runner) setKeepLargest(keep map[int][]int) error {
	for _, dd := range r.doms {
		if len(dd.val) == 0 {
			continue
		}
		d := &r.net.Model.Config.Domains[dd.index]
		var plan preprocess.Plan
		if err := json.Unmarshal(d.Plan, &plan); err != nil {
			return fmt.Errorf("domain %s: %w", d.Name, err)
		}
		plan.KeepLargest = keep[dd.index]
		b, err := json.Marshal(plan)
		if err != nil {
			return err
		}
		d.Plan = b
	}
	return nil
}

// Segment predicts a preprocessed case with the sliding window (Gaussian
// weighting, overlap 0.5) and returns its label map in the preprocessed grid.
func Segment(ctx context.Context, net *u2net.Net, dom int, c *preprocess.Case, patch [3]int, batch int) ([]uint8, error) {
	res, err := predict.Window(ctx, net, dom, c.Image, c.Shape, predict.Options{Patch: patch, Batch: batch})
	if err != nil {
		return nil, err
	}
	return res.Labels, nil
}

// saveBest writes the model with its plans as the run's best model.
func (r *runner) saveBest() error {
	if err := r.net.Pull(); err != nil {
		return err
	}
	return r.net.Model.Save(filepath.Join(r.opt.Out, ModelFile))
}

// checkpoint writes the latest weights, optimiser state and step.
func (r *runner) checkpoint(step int) error {
	if err := r.net.Pull(); err != nil {
		return err
	}
	state, err := r.net.OptimizerState()
	if err != nil {
		return err
	}
	meta := map[string]string{
		"step":      strconv.Itoa(step),
		"best_dice": strconv.FormatFloat(r.best, 'g', -1, 64),
		"saved":     time.Now().UTC().Format(time.RFC3339),
	}
	return r.net.Model.SaveFile(filepath.Join(r.opt.Out, CheckpointFile), u2net.File{State: state, Meta: meta})
}

// record appends to metrics.jsonl and redraws progress.png.
func (r *runner) record(rec Record) error {
	f, err := os.OpenFile(filepath.Join(r.opt.Out, MetricsFile), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(rec)
	_, werr := f.Write(append(b, '\n'))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return werr
	}
	records, err := report.ReadRecords(filepath.Join(r.opt.Out, MetricsFile))
	if err != nil {
		return err
	}
	return report.Progress(filepath.Join(r.opt.Out, ProgressFile), records)
}

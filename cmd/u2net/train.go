package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/u2net/train"
)

func init() {
	register(command{name: "train", short: "train a model on Decathlon datasets", run: runTrain})
}

func runTrain(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("train", "--data DIR [--data DIR ...] --out RUN", stderr)
	var data listFlag
	fs.Var(&data, "data", "Decathlon dataset folder (repeat for several domains)")
	opt := train.Options{}
	fs.StringVar(&opt.Out, "out", "", "run folder for the model, checkpoint, metrics and plots")
	fs.StringVar(&opt.Mode, "mode", "universal", "universal, shared or independent")
	fs.StringVar(&opt.Upsample, "upsample", "transpose", "decoder up-sampling: transpose or nearest")
	fs.IntVar(&opt.Epochs, "epochs", 50, "epochs")
	fs.IntVar(&opt.StepsPerEpoch, "steps-per-epoch", 250, "training steps per epoch (domains take turns)")
	patch := fs.String("patch", "", "patch size D,H,W (default: from the datasets' median shapes, shrunk until the device holds a training step)")
	fs.IntVar(&opt.Batch, "batch", 2, "patches per step")
	fs.IntVar(&opt.BaseChannels, "base-channels", 16, "channels of the first level")
	pools := fs.String("pools", "", "poolings per axis D,H,W (default: from the patch, at most 5)")
	device := fs.String("device", "", "device index, name or cpu (default: the best found)")
	var memoryLimit memoryLimitFlag
	fs.Var(&memoryLimit, "memory-limit", "cap on the memory used for tensors, e.g. 8GiB; default: half the host's memory on the CPU engine and CPU Vulkan devices, no cap on GPUs; 0: no cap")
	kernels := addKernelFlag(fs)
	seed := fs.Uint64("seed", 1, "random seed")
	fs.StringVar(&opt.Optimizer, "optimizer", "adam", "adam (3e-4, weight decay 5e-4) or sgd (Nesterov, poly decay)")
	fs.Float64Var(&opt.LR, "lr", 0, "learning rate (default: the optimizer's)")
	fs.BoolVar(&opt.PolyDecay, "poly-decay", false, "decay the learning rate polynomially with Adam too (SGD always does)")
	fs.IntVar(&opt.ValEvery, "val-every", 5, "validate every this many epochs")
	fs.Float64Var(&opt.ValFraction, "val-fraction", 0.2, "share of each dataset's training cases held out for validation (the last ones)")
	fs.IntVar(&opt.Folds, "folds", 0, "split each dataset's training cases into this many folds, the same for every run, and validate on --fold instead of --val-fraction")
	fs.IntVar(&opt.Fold, "fold", 0, "the fold held out for validation, from 0 to --folds minus 1 (or the fold of a --split fold file)")
	fs.StringVar(&opt.Split, "split", "", "take each dataset's validation cases from this file: a run's split.json, or the reference implementation's fold_splits.json (datasets by folder name, with --fold)")
	fs.BoolVar(&opt.Resume, "resume", false, "continue the run in --out from its checkpoint")
	fs.StringVar(&opt.Init, "init", "", "start from this model; datasets of new domains add them")
	fs.BoolVar(&opt.FreezeShared, "freeze-shared", false, "keep the shared parameters fixed (adapt to new domains only)")
	fs.StringVar(&opt.Cache, "cache", "", "folder of the preprocessed cases and plans (default: RUN/cache); runs on the same datasets, such as the folds of a cross-validation, can share one")
	fs.IntVar(&opt.Workers, "workers", 0, "cases planned and preprocessed at once, each holding a whole image (default: one per core, at most 8); batches built ahead use up to 4 of them")
	fs.BoolVar(&opt.DeepSupervisionLoss, "ds-loss", true, "also train the deep-supervision heads on down-sampled labels (weights halving per level)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := kernels.check(); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("unexpected arguments %v", fs.Args())
	}
	opt.Data, opt.Seed = data, *seed
	if opt.Workers < 0 {
		return usageError("--workers %d: want 0 (automatic) or more", opt.Workers)
	}
	if opt.Folds != 0 || opt.Split != "" {
		if flagGiven(fs, "val-fraction") {
			return usageError("--val-fraction and --folds or --split both choose the validation cases: give one")
		}
		opt.ValFraction = 0
	}
	var err error
	if *patch != "" {
		if opt.Patch, err = parseTriple("--patch", *patch); err != nil {
			return err
		}
	}
	opt.Pools = [3]int{-1, -1, -1}
	if *pools != "" {
		if opt.Pools, err = parseTriple("--pools", *pools); err != nil {
			return err
		}
	}
	if len(opt.Data) == 0 {
		return usageError("give at least one --data folder")
	}
	if opt.Out == "" {
		return usageError("give --out RUN")
	}
	// The log goes to the terminal and to RUN/train.log.
	if err := os.MkdirAll(opt.Out, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	logFile, err := os.OpenFile(filepath.Join(opt.Out, "train.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	defer logFile.Close()
	log := newLogger(io.MultiWriter(stderr, logFile))
	if opt.Resume && !flagGiven(fs, "tuning") {
		// A resumed run keeps the kernel choices it began with, whatever
		// was tuned since (--kernel over them): it then continues exactly.
		if prev, err := train.ReadOptions(opt.Out); err == nil {
			kernels.run = &prev.Kernels
		}
	}
	e, err := openEngine(*device, memoryLimit, log)
	if err != nil {
		return err
	}
	defer e.Close()
	if err := kernels.apply(e, forTraining, log); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := train.Run(ctx, opt, e, log, terminal(stderr))
	if ops.DoesNotFit(err) {
		return fmt.Errorf("%w\nthe engine cannot hold the network for this patch and batch: a smaller --patch or --batch needs less", err)
	}
	if err != nil {
		return err
	}
	if res.Stopped {
		fmt.Fprintf(stdout, "stopped at step %d; continue with --resume\n", res.Steps)
		return nil
	}
	if len(res.BestDice) == 0 {
		fmt.Fprintf(stdout, "trained %d steps (no validation); model in %s\n", res.Steps, opt.Out)
		return nil
	}
	fmt.Fprintf(stdout, "trained %d steps; best validation Dice: %s; model in %s\n", res.Steps, train.FormatDice(res.BestDice), opt.Out)
	return nil
}

package bench

import (
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/u2net-vk/u2net/ops"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// WriteText prints the reports as tables; several reports (engines) are
// printed one after the other and then side by side.
func WriteText(w io.Writer, reps []*Report) {
	for _, r := range reps {
		fmt.Fprintf(w, "\n== %s\n", r.Engine)
		if len(r.Kernels) > 0 {
			fmt.Fprintf(w, "kernel choices: %s\n", strings.Join(r.Kernels, ", "))
		}
		if r.Peaks.CopyGBps > 0 {
			fmt.Fprintf(w, "measured peaks: copy %.0f GB/s, FMA %.0f GFLOP/s; host to device %.1f GB/s, back %.1f GB/s\n",
				r.Peaks.CopyGBps, r.Peaks.GFLOPs, r.Peaks.UploadGBps, r.Peaks.DownloadGBps)
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "level\top\tshape\tfwd ms\tbwd ms\tfwd+bwd ms\tspread %\tGB/s\tGFLOP/s\t% of floor\tPyTorch fwd\tPyTorch fwd+bwd\t")
		for _, o := range r.Ops {
			lvl := fmt.Sprint(o.Level)
			if o.Level < 0 {
				lvl = "§8"
			}
			torch := "\t"
			if o.TorchTotal > 0 {
				torch = fmt.Sprintf("%.3f\t%.3f", o.TorchFwd, o.TorchTotal)
			}
			if o.Skipped != "" {
				fmt.Fprintf(tw, "%s\t%s\t%s\tdoes not fit\t-\t-\t-\t-\t-\t-\t%s\t\n", lvl, o.Op, o.Shape, torch)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.3f\t%.3f\t%.3f\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t\n", lvl, o.Op, o.Shape, o.FwdMS, o.BwdMS, o.FwdBwdMS,
				100*o.Spread(), o.GBps, o.GFLOPs, 100*o.PeakFrac, torch)
		}
		tw.Flush()
		writeDispatches(w, r.Ops)
		if len(r.Separable) > 0 {
			fmt.Fprintln(w, "\nseparable unit (depthwise 3³ + pointwise) against dense 3³, same channels:")
			tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "level\tshape\tparams sep/dense\tGFLOP sep/dense\tGB sep/dense\tfwd ms sep/dense\tfwd+bwd ms sep/dense\tspeedup\t")
			for _, s := range r.Separable {
				times := fmt.Sprintf("%.3f / %.3f\t%.3f / %.3f\t%.2f×", s.SepFwdMS, s.DenseFwdMS, s.SepFwdBwdMS, s.DenseFwdBwdMS,
					s.SpeedupFwdBwd)
				if s.SpeedupFwdBwd == 0 {
					times = "-\t-\t-" // an operation did not fit the device
				}
				fmt.Fprintf(tw, "%d\t%s\t%d / %d\t%.2f / %.2f\t%.2f / %.2f\t%s\t\n", s.Level, s.Shape,
					s.SepParams, s.DenseParams, s.SepGFLOP, s.DenseGFLOP, s.SepGB, s.DenseGB, times)
			}
			tw.Flush()
		}
		if len(r.Network) > 0 {
			fmt.Fprintln(w, "\nwhole network:")
			tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "mode\tsetting\tparams\ttrain step ms (GPU)\tforward ms (GPU)\tplan GiB\tpeak GiB\tfwd peak GiB\tPyTorch step (TF32)\tPyTorch fwd\tPyTorch peak\t")
			for _, n := range r.Network {
				torch := "\t\t"
				if n.TorchStep > 0 {
					torch = fmt.Sprintf("%.0f (%.0f)\t%.1f\t%.1f", n.TorchStep, n.TorchTF32, n.TorchFwdMS, n.TorchPeak)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%.2f\t%.2f\t%.2f\t%s\t\n", n.Mode, n.Setting, n.Params,
					wallGPU(n.StepMS, n.StepGPUMS), wallGPU(n.ForwardMS, n.ForwardGPUMS), n.PlanGiB, n.PeakGiB, n.ForwardPeakGiB, torch)
			}
			tw.Flush()
			for _, n := range r.Network {
				if n.Note != "" {
					fmt.Fprintf(w, "%s: %s\n", n.Mode, n.Note)
				}
			}
			for _, n := range r.Network {
				for _, prof := range []struct {
					name string
					ks   []KernelTime
				}{{"train step", n.StepProfile}, {"forward", n.ForwardProfile}} {
					if len(prof.ks) == 0 {
						continue
					}
					fmt.Fprintf(w, "%s %s: GPU time by kernel (%.1f ms in all, %d dispatches):", n.Mode, prof.name,
						totalMS(prof.ks), totalDispatches(prof.ks))
					for i, k := range byKernel(prof.ks) {
						if i == 8 {
							break
						}
						fmt.Fprintf(w, " %s %.1f (%d×);", k.Kernel, k.MS, k.Dispatches)
					}
					fmt.Fprintf(w, "\n  by operation:")
					for i, k := range prof.ks {
						if i == 10 {
							break
						}
						fmt.Fprintf(w, " %s in %s %.1f (%d×);", k.Kernel, k.Op, k.MS, k.Dispatches)
					}
					fmt.Fprintln(w)
				}
			}
		}
		if len(r.Scaling) > 0 {
			fmt.Fprintln(w, "\nforward time per voxel as the volume grows:")
			tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "size\tforward ms\tns/voxel\t")
			for _, s := range r.Scaling {
				if s.Skipped != "" {
					fmt.Fprintf(tw, "%d³\tdoes not fit\t-\t\n", s.Size)
					continue
				}
				fmt.Fprintf(tw, "%d³\t%.2f\t%.2f\t\n", s.Size, s.ForwardMS, s.NSPerVox)
			}
			tw.Flush()
		}
		writeTiles(w, r.Tiles)
		writeKernelAB(w, r.KernelAB)
	}
	if len(reps) > 1 {
		fmt.Fprintln(w, "\nengines side by side (fwd+bwd ms; whole network: train step ms):")
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "op\tshape\t")
		for _, r := range reps {
			fmt.Fprintf(tw, "%s\t", r.Engine)
		}
		fmt.Fprintln(tw)
		for i, o := range reps[0].Ops {
			fmt.Fprintf(tw, "%s\t%s\t", o.Op, o.Shape)
			for _, r := range reps {
				if i < len(r.Ops) && r.Ops[i].Op == o.Op && r.Ops[i].Shape == o.Shape && r.Ops[i].Skipped == "" {
					fmt.Fprintf(tw, "%.3f\t", r.Ops[i].FwdBwdMS)
				} else {
					fmt.Fprint(tw, "-\t")
				}
			}
			fmt.Fprintln(tw)
		}
		for i, n := range reps[0].Network {
			fmt.Fprintf(tw, "%s step\t%s\t", n.Mode, n.Setting)
			for _, r := range reps {
				if i < len(r.Network) && r.Network[i].Setting == n.Setting {
					fmt.Fprintf(tw, "%.1f\t", r.Network[i].StepMS)
				} else {
					fmt.Fprint(tw, "-\t")
				}
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
}

// WritePNG draws each engine's fwd+bwd time per operation (and PyTorch's
// where measured) as grouped bars.
func WritePNG(path string, reps []*Report) error {
	p := plot.New()
	p.Title.Text = "forward + backward per operation"
	p.Y.Label.Text = "ms"
	if len(reps) == 0 || len(reps[0].Ops) == 0 {
		return fmt.Errorf("bench: nothing to draw")
	}
	var names []string
	for _, o := range reps[0].Ops {
		lvl := fmt.Sprintf("L%d", o.Level)
		if o.Level < 0 {
			lvl = "§8"
		}
		names = append(names, lvl+" "+o.Op)
	}
	width := vg.Points(8)
	groups := len(reps)
	var torch plotter.Values
	hasTorch := false
	for _, o := range reps[0].Ops {
		torch = append(torch, o.TorchTotal)
		hasTorch = hasTorch || o.TorchTotal > 0
	}
	if hasTorch {
		groups++
	}
	for i, r := range reps {
		var v plotter.Values
		for j := range reps[0].Ops {
			if j < len(r.Ops) {
				v = append(v, r.Ops[j].FwdBwdMS)
			} else {
				v = append(v, 0)
			}
		}
		bars, err := plotter.NewBarChart(v, width)
		if err != nil {
			return err
		}
		bars.Offset = vg.Length(float64(i)-float64(groups-1)/2) * width
		bars.Color = plotColor(i)
		p.Add(bars)
		p.Legend.Add(r.Engine, bars)
	}
	if hasTorch {
		bars, err := plotter.NewBarChart(torch, width)
		if err != nil {
			return err
		}
		bars.Offset = vg.Length(float64(groups-1)/2) * width
		bars.Color = plotColor(7)
		p.Add(bars)
		p.Legend.Add("PyTorch 2.11 + cuDNN, H200", bars)
	}
	p.Legend.Top = true
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = 1.2
	p.X.Tick.Label.XAlign = -0.9
	w := vg.Length(max(8, len(names))) * vg.Centimeter
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp.png")
	if err := p.Save(w, 12*vg.Centimeter, tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func plotColor(i int) color.Color {
	palette := []color.RGBA{{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255},
		{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255}}
	return palette[i%len(palette)]
}

// tilesShown is how many tilings per operation writeTiles lists.
const tilesShown = 5

// writeTiles prints each GEMM-family operation's fastest tilings and the
// built-in choice, then each GEMM product's best tiling beside the
// built-in one.
func writeTiles(w io.Writer, res []TileResult) {
	if len(res) == 0 {
		return
	}
	fmt.Fprintf(w, "\nGEMM tilings (BM×BN×BK/TM×TN), the %d fastest fwd+bwd and the default:\n", tilesShown)
	by := map[string][]TileResult{}
	var order []string
	for _, r := range res {
		if _, ok := by[r.Op]; !ok {
			order = append(order, r.Op)
		}
		by[r.Op] = append(by[r.Op], r)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tshape\ttile\tfwd ms\tbwd ms\tfwd+bwd ms\tvs default\t")
	for _, op := range order {
		rs := append([]TileResult(nil), by[op]...)
		def := defaultTile(rs)
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].FwdBwdMS < rs[j].FwdBwdMS })
		for i, r := range rs {
			if i >= tilesShown && r.Tile != "default" {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.3f\t%.3f\t%.3f\t%s\t\n", r.Op, r.Shape, r.Tile, r.FwdMS, r.BwdMS, r.FwdBwdMS,
				ratio(def.FwdBwdMS, r.FwdBwdMS))
		}
	}
	tw.Flush()

	fmt.Fprintln(w, "\nbest tiling per GEMM product (ms, summed over the operation's forward and backward calls):")
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tproduct\tdefault ms\tbest tile\tbest ms\tvs default\t")
	for _, op := range order {
		rs := by[op]
		def := defaultTile(rs)
		for _, p := range []string{"fwd", "dgrad", "wgrad"} {
			if _, ok := def.Products[p]; !ok {
				continue
			}
			best := def
			for _, r := range rs {
				if v, ok := r.Products[p]; ok && v < best.Products[p] {
					best = r
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%.3f\t%s\t%.3f\t%s\t\n", op, p, def.Products[p], best.Tile, best.Products[p],
				ratio(def.Products[p], best.Products[p]))
		}
	}
	tw.Flush()
}

// defaultTile returns the result under the built-in tiling.
func defaultTile(rs []TileResult) TileResult {
	for _, r := range rs {
		if r.Tile == "default" {
			return r
		}
	}
	return TileResult{}
}

// ratio formats how many times faster now is than before.
func ratio(before, now float64) string {
	if before <= 0 || now <= 0 {
		return ""
	}
	return fmt.Sprintf("%.2f×", before/now)
}

// byKernel sums a profile over the operations of each kernel, largest
// first.
func byKernel(ks []KernelTime) []KernelTime {
	by := map[string]*KernelTime{}
	var out []*KernelTime
	for _, k := range ks {
		t := by[k.Kernel]
		if t == nil {
			t = &KernelTime{Kernel: k.Kernel}
			by[k.Kernel] = t
			out = append(out, t)
		}
		t.Dispatches += k.Dispatches
		t.MS += k.MS
	}
	res := make([]KernelTime, len(out))
	for i, t := range out {
		res[i] = *t
	}
	sort.SliceStable(res, func(i, j int) bool { return res[i].MS > res[j].MS })
	return res
}

// wallGPU formats a wall time with the GPU time of the same pass, when
// measured.
func wallGPU(wall, gpu float64) string {
	if gpu == 0 {
		return fmt.Sprintf("%.1f", wall)
	}
	return fmt.Sprintf("%.1f (%.1f)", wall, gpu)
}

// writeDispatches lists, for each operation timed on a GPU, the median time
// of each dispatch of its passes: where its time goes.
func writeDispatches(w io.Writer, res []OpResult) {
	header := false
	for _, o := range res {
		if len(o.FwdDispatches)+len(o.BwdDispatches) == 0 {
			continue
		}
		if !header {
			fmt.Fprintln(w, "\ndispatches (GPU ms, median of each):")
			header = true
		}
		lvl := fmt.Sprint(o.Level)
		if o.Level < 0 {
			lvl = "§8"
		}
		fmt.Fprintf(w, "%s %s %s: fwd %s; bwd %s\n", lvl, o.Op, o.Shape, dispatchList(o.FwdDispatches),
			dispatchList(o.BwdDispatches))
	}
}

// dispatchList formats a pass's dispatches: each kernel, with the product
// of the GEMM family where its label names one, and its time.
func dispatchList(ks []KernelTime) string {
	parts := make([]string, len(ks))
	for i, k := range ks {
		name := k.Kernel
		if prod := ops.GEMMProduct(k.Op); prod != "" {
			name += "/" + prod
		}
		parts[i] = fmt.Sprintf("%s %.3f", name, k.MS)
	}
	return strings.Join(parts, " + ")
}

// writeKernelAB prints the universal network under each kernel choice
// against the baseline (the first result).
func writeKernelAB(w io.Writer, res []KernelResult) {
	if len(res) == 0 {
		return
	}
	base := res[0]
	fmt.Fprintf(w, "\nkernel choices, the universal network at %s, each against the choices as set:\n", base.Setting)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "choice\ttrain step ms (GPU)\tforward ms (GPU)\tstep speed-up\tforward speed-up\t")
	for _, k := range res {
		name, step, fwd := k.Choice, "", ""
		if name == "" {
			name = "(as set)"
		} else {
			step, fwd = ratio(base.StepGPUMS, k.StepGPUMS), ratio(base.ForwardGPUMS, k.ForwardGPUMS)
		}
		if k.Error != "" {
			fmt.Fprintf(tw, "%s\tfailed: %s\t\t\t\t\n", name, k.Error)
			continue
		}
		if k.Same {
			fmt.Fprintf(tw, "%s\tthe dispatches as set: not measured\t\t\t\t\n", name)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", name, wallGPU(k.StepMS, k.StepGPUMS), wallGPU(k.ForwardMS, k.ForwardGPUMS), step, fwd)
	}
	tw.Flush()
}

package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Record is one line of metrics.jsonl, the training loop's log: one JSON
// object per line, e.g.
//
//	{"epoch":3,"step":750,"loss":0.412,"lr":0.0098,"dice":{"heart":0.81}}
//
// Dice holds the mean foreground validation Dice per domain and is omitted
// on steps without validation. A record with neither loss nor learning rate
// (both 0) but with Dice is a validation-only record: Progress leaves it out
// of the loss and learning-rate panels.
type Record struct {
	Epoch int                `json:"epoch"`
	Step  int                `json:"step"`
	Loss  float64            `json:"loss"`
	LR    float64            `json:"lr"`
	Dice  map[string]float64 `json:"dice,omitempty"`
}

func (r *Record) validationOnly() bool { return r.Loss == 0 && r.LR == 0 && len(r.Dice) > 0 }

// WriteRecord appends r to w as one line of JSON. Values must be finite
// (JSON has no NaN).
func WriteRecord(w io.Writer, r Record) error {
	b, err := json.Marshal(&r)
	if err != nil {
		return fmt.Errorf("report: record of step %d: %w", r.Step, err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// ReadRecords reads a metrics.jsonl file. Blank lines are skipped. A last
// line without its newline that does not parse is taken for a record the
// training process was still writing and is ignored; any other bad line is
// an error naming the file and line.
func ReadRecords(path string) ([]Record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	lines := bytes.Split(b, []byte("\n"))
	var out []Record
	for i, l := range lines {
		l = bytes.TrimSpace(l)
		if len(l) == 0 {
			continue
		}
		var r Record
		if err := json.Unmarshal(l, &r); err != nil {
			if i == len(lines)-1 {
				break // unterminated last line: a write in progress
			}
			return nil, fmt.Errorf("report: %s:%d: %w", path, i+1, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Progress size in inches at progressDPI.
const (
	progressWidth  = 8 * vg.Inch
	panelHeight    = 2.6 * vg.Inch
	progressDPI    = 96
	logScaleMinMax = 10 // use a log axis when the values span more than this factor
)

// Progress writes to path a PNG of the training curves in records: the
// training loss, the validation Dice per domain (when any record has
// Dice) and the learning rate, one panel each, against the step (or the
// epoch when no record has a step). Loss and learning rate get a log axis
// when they are positive and span more than a factor of 10.
func Progress(path string, records []Record) error {
	plots, err := progressPlots(records)
	if err != nil {
		return fmt.Errorf("report: progress %s: %w", path, err)
	}
	h := panelHeight * vg.Length(len(plots))
	c := vgimg.NewWith(vgimg.UseWH(progressWidth, h), vgimg.UseDPI(progressDPI))
	dc := draw.New(c)
	// White background: vgimg canvases start transparent.
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	grid := make([][]*plot.Plot, len(plots))
	for i, p := range plots {
		grid[i] = []*plot.Plot{p}
	}
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadTop: 4, PadBottom: 4, PadLeft: 4, PadRight: 12, PadY: 10}
	canvases := plot.Align(grid, tiles, dc)
	for i, p := range plots {
		p.Draw(canvases[i][0])
	}
	return writeAtomic(path, func(w io.Writer) error {
		_, err := vgimg.PngCanvas{Canvas: c}.WriteTo(w)
		return err
	})
}

func progressPlots(records []Record) ([]*plot.Plot, error) {
	if len(records) == 0 {
		return nil, errors.New("no records")
	}
	useEpoch := true
	for _, r := range records {
		if r.Step != 0 {
			useEpoch = false
			break
		}
	}
	xLabel := "step"
	xOf := func(r *Record) float64 { return float64(r.Step) }
	if useEpoch {
		xLabel = "epoch"
		xOf = func(r *Record) float64 { return float64(r.Epoch) }
	}

	var loss, lr plotter.XYs
	dice := map[string]plotter.XYs{}
	for i := range records {
		r := &records[i]
		x := xOf(r)
		if !r.validationOnly() {
			if finite(r.Loss) {
				loss = append(loss, plotter.XY{X: x, Y: r.Loss})
			}
			if finite(r.LR) {
				lr = append(lr, plotter.XY{X: x, Y: r.LR})
			}
		}
		for d, v := range r.Dice {
			if finite(v) {
				dice[d] = append(dice[d], plotter.XY{X: x, Y: v})
			}
		}
	}

	var plots []*plot.Plot
	if len(loss) > 0 {
		p, err := linePlot("training loss", xLabel, "loss", loss)
		if err != nil {
			return nil, err
		}
		plots = append(plots, p)
	}
	if len(dice) > 0 {
		p := plot.New()
		p.Title.Text = "validation Dice"
		p.X.Label.Text = xLabel
		p.Y.Label.Text = "Dice"
		p.Y.Min, p.Y.Max = 0, 1
		p.Add(plotter.NewGrid())
		// Bottom right, inside the axes: Dice curves rise, so that corner
		// is usually empty.
		p.Legend.Top, p.Legend.Left = false, false
		p.Legend.XOffs, p.Legend.YOffs = -vg.Points(10), vg.Points(10)
		names := make([]string, 0, len(dice))
		for d := range dice {
			names = append(names, d)
		}
		slices.Sort(names)
		for i, d := range names {
			pts := dice[d]
			l, s, err := plotter.NewLinePoints(pts)
			if err != nil {
				return nil, fmt.Errorf("Dice of %s: %w", d, err)
			}
			l.Color = plotutil.Color(i)
			l.Width = vg.Points(1.5)
			s.Color = plotutil.Color(i)
			s.Shape = draw.CircleGlyph{}
			s.Radius = vg.Points(2)
			p.Add(l, s)
			p.Legend.Add(d, l, s)
		}
		plots = append(plots, p)
	}
	if len(lr) > 0 {
		p, err := linePlot("learning rate", xLabel, "lr", lr)
		if err != nil {
			return nil, err
		}
		plots = append(plots, p)
	}
	if len(plots) == 0 {
		return nil, errors.New("records hold no finite loss, Dice or learning rate")
	}
	// One x range for all panels, so they line up.
	xmin, xmax := math.Inf(1), math.Inf(-1)
	for i := range records {
		x := xOf(&records[i])
		xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
	}
	if xmax == xmin {
		xmin, xmax = xmin-1, xmax+1
	}
	for _, p := range plots {
		p.X.Min, p.X.Max = xmin, xmax
	}
	return plots, nil
}

// linePlot draws one series, on a log axis when it is positive and spans
// more than logScaleMinMax.
func linePlot(title, xLabel, yLabel string, pts plotter.XYs) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Add(plotter.NewGrid())
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, q := range pts {
		lo, hi = math.Min(lo, q.Y), math.Max(hi, q.Y)
	}
	if lo > 0 && hi/lo > logScaleMinMax {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	} else if lo == hi {
		// A constant series (a fixed learning rate) gets an axis around its
		// value rather than one the autoscaler centres on zero.
		p.Y.Min, p.Y.Max = math.Min(0, 2*lo), math.Max(0, 2*hi)
	}
	l, err := plotter.NewLine(pts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", title, err)
	}
	l.Color = plotutil.Color(0)
	l.Width = vg.Points(1.5)
	p.Add(l)
	return p, nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

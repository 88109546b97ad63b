package train

import (
	"fmt"
	"io"

	"github.com/schollz/progressbar/v3"
)

// bar shows training progress on a terminal; with no writer it does
// nothing (the log lines tell the story).
type bar struct {
	pb *progressbar.ProgressBar
	w  io.Writer
}

func newBar(w io.Writer, total, start int) *bar {
	if w == nil {
		return &bar{}
	}
	pb := progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("training"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetItsString("steps"),
		progressbar.OptionShowIts(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200_000_000),
	)
	pb.Set(start)
	return &bar{pb: pb, w: w}
}

func (b *bar) step(done int, loss float64) {
	if b.pb == nil {
		return
	}
	b.pb.Describe(fmt.Sprintf("training (loss %.3f)", loss))
	b.pb.Set(done)
}

func (b *bar) finish() {
	if b.pb != nil {
		b.pb.Finish()
		fmt.Fprintln(b.w)
	}
}

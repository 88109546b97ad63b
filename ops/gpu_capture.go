package ops

import (
	"errors"
	"fmt"

	"github.com/u2net-vk/u2net/vk"
)

// Recording is GPU work captured once and submitted again on every Run:
// repeated passes of the same network skip recording thousands of
// dispatches each time.
type Recording struct {
	g     *GPU
	batch *vk.Batch
	timed bool
}

// InputSlot is the staging memory of an upload inside a recording.
type InputSlot struct{ slot *vk.Slot }

// Write sets the data the next runs of the recording upload.
func (s *InputSlot) Write(data []float32) error { return s.slot.Write(data) }

// WriteLabels sets the labels the next runs of the recording upload (a slot
// of a label tensor).
func (s *InputSlot) WriteLabels(data []int32) error { return s.slot.Write(data) }

// Capture calls fn with the engine recording into a batch of its own and
// returns it for replay: the operations fn calls are recorded, not run.
// Inside fn, WriteSlot and ReadInto stand for Write and Read; Sync and Read
// are refused. Every tensor fn uses must outlive the recording. A recording
// captured while the engine is timed (SetTimed) adds its dispatches' GPU
// times to TakeTimings on every run.
func (g *GPU) Capture(fn func() error) (*Recording, error) {
	if err := g.Sync(); err != nil {
		return nil, err
	}
	// A recording binds today's scratch buffers: from now on a scratch
	// buffer that grows is kept until Close, never reused.
	g.pinScratch = true
	capture := g.newBatch()
	saved := g.batch
	g.batch, g.capturing = capture, true
	err := fn()
	g.batch, g.capturing = saved, false
	if err == nil {
		err = capture.Err()
	}
	if err != nil {
		capture.Release()
		return nil, fmt.Errorf("ops: capturing GPU work: %w", err)
	}
	return &Recording{g: g, batch: capture, timed: g.timed}, nil
}

// Timed reports whether the recording writes GPU timestamps.
func (r *Recording) Timed() bool { return r.timed }

// Run submits the recording after the engine's pending work and waits.
func (r *Recording) Run() error {
	if err := r.g.Sync(); err != nil {
		return err
	}
	if err := r.batch.Run(); err != nil {
		return fmt.Errorf("ops: replaying recorded GPU work: %w", err)
	}
	if r.timed && r.g.timed {
		r.g.timings = append(r.g.timings, r.batch.Timings()...)
	}
	return nil
}

// Release frees the recording's command buffers and staging memory.
func (r *Recording) Release() { r.batch.Release() }

// WriteSlot records an upload into t whose data is written into the
// returned slot before each run.
func (g *GPU) WriteSlot(t *Tensor) (*InputSlot, error) {
	return g.uploadSlot("WriteSlot", t, in("tensor", t, -1))
}

// WriteLabelsSlot is WriteSlot for a label tensor.
func (g *GPU) WriteLabelsSlot(t *Tensor) (*InputSlot, error) {
	return g.uploadSlot("WriteLabelsSlot", t, labels("tensor", t, -1))
}

func (g *GPU) uploadSlot(op string, t *Tensor, a arg) (*InputSlot, error) {
	if err := checkArgs(g, op, nil, a); err != nil {
		return nil, err
	}
	slot := g.batch.UploadSlot(t.gpu.buf, 4*uint64(t.n))
	if err := g.recorded(op); err != nil {
		return nil, err
	}
	return &InputSlot{slot: slot}, nil
}

// OutputSlot is the destination of a download inside a recording.
type OutputSlot struct {
	slot *vk.ReadSlot
	n    int
}

// SetDest sets the slice (of the tensor's length) that the next runs of the
// recording fill: each run can hand its results to a new slice without a
// further copy.
func (s *OutputSlot) SetDest(dst []float32) error { return s.slot.SetDest(dst) }

// ReadSlot records a download of t whose destination is set before each run
// with SetDest.
func (g *GPU) ReadSlot(t *Tensor) (*OutputSlot, error) {
	if err := checkArgs(g, "ReadSlot", nil, in("tensor", t, -1)); err != nil {
		return nil, err
	}
	slot := g.batch.DownloadSlot(t.gpu.buf, 4*t.n)
	if err := g.recorded("ReadSlot"); err != nil {
		return nil, err
	}
	return &OutputSlot{slot: slot, n: t.n}, nil
}

// ReadInto records a download of t into dst, which each run then fills.
func (g *GPU) ReadInto(t *Tensor, dst []float32) error {
	if err := checkArgs(g, "ReadInto", nil, in("tensor", t, len(dst))); err != nil {
		return err
	}
	g.batch.Download(dst, t.gpu.buf)
	return g.recorded("ReadInto")
}

var errSyncInCapture = errors.New("ops: Sync or Read inside Capture; use ReadInto")

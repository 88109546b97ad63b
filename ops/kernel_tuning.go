package ops

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/u2net-vk/u2net/vk"
)

// KernelTuning is the kernel choices measured fastest on one device and driver
// (u2net tune): one set for training steps, one for forward passes, which
// the program applies on that device in place of the engine's own rules.
type KernelTuning struct {
	Device        string `json:"device"`
	VendorID      uint32 `json:"vendor_id"`
	DeviceID      uint32 `json:"device_id"`
	DriverVersion uint32 `json:"driver_version"`
	Driver        string `json:"driver"`
	// Setting is the network the choices were measured on, Program the
	// program that measured them (another version's kernels may run at
	// other speeds: tune again after an upgrade).
	Setting  string    `json:"setting"`
	Program  string    `json:"program,omitempty"`
	Measured time.Time `json:"measured"`
	// Train and Predict are choices SetKernel takes, "name=value"; empty:
	// the engine's own rules were the fastest.
	Train   []string `json:"train"`
	Predict []string `json:"predict"`
	// Results are the measurements the choices come from.
	Results []KernelTuningResult `json:"results"`
}

// KernelTuningResult is the network's GPU time under some kernel choices (none:
// the engine's own rules).
type KernelTuningResult struct {
	Choices      []string `json:"choices"`
	StepGPUMS    float64  `json:"train_step_gpu_ms"`
	ForwardGPUMS float64  `json:"forward_gpu_ms"`
	// Again marks a measurement repeated to confirm a pick.
	Again bool `json:"again,omitempty"`
	// Same marks choices under which the network recorded the dispatches
	// it records under the rules (GPU.RecordedDispatches): not measured,
	// they change nothing on this device.
	Same bool `json:"same_as_rules,omitempty"`
	// Error is why the network could not be measured under the choices.
	Error string `json:"error,omitempty"`
}

// NewKernelTuning starts the tuning of g's device, measured now.
func NewKernelTuning(g *GPU) KernelTuning {
	info := g.Device().Info()
	return KernelTuning{Device: info.Name, VendorID: info.VendorID, DeviceID: info.DeviceID, DriverVersion: info.DriverVersion,
		Driver: info.Driver + " " + info.DriverInfo, Measured: time.Now().UTC().Truncate(time.Second)}
}

// KernelTuningPath is where the tuning of g's device is kept, "" where the
// device keeps no files.
func KernelTuningPath(g *GPU) string {
	return KernelTuningFile(g.Device().CacheDir(), g.Device().Info())
}

// KernelTuningFile is where the tuning of a device is kept in the cache
// folder dir (vk.CacheDir): a file per vendor and device; "" when dir is.
func KernelTuningFile(dir string, info vk.DeviceInfo) string {
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, fmt.Sprintf("kernels-%04x-%04x.json", info.VendorID, info.DeviceID))
}

// ErrNoKernelTuning is ReadKernelTuning's error for a file that does not exist.
var ErrNoKernelTuning = errors.New("no tuning")

// ReadKernelTuning reads a tuning file and checks every choice in it; errors name
// the file.
func ReadKernelTuning(path string) (KernelTuning, error) {
	var t KernelTuning
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return t, fmt.Errorf("%s: %w", path, ErrNoKernelTuning)
	}
	if err != nil {
		return t, err
	}
	if err := json.Unmarshal(data, &t); err != nil {
		return t, fmt.Errorf("%s: not a kernel tuning: %w", path, err)
	}
	for _, set := range [][]string{t.Train, t.Predict} {
		for _, c := range set {
			if err := CheckKernel(c); err != nil {
				return t, fmt.Errorf("%s: %w", path, err)
			}
		}
	}
	return t, nil
}

// ReadDeviceTuning reads the tuning of the device of info kept in the
// cache folder dir and checks that it was measured with that device and
// driver. path is the file ("" where dir is); a missing file gives
// ErrNoKernelTuning.
func ReadDeviceTuning(dir string, info vk.DeviceInfo) (t KernelTuning, path string, err error) {
	if path = KernelTuningFile(dir, info); path == "" {
		return t, "", fmt.Errorf("no cache folder: %w", ErrNoKernelTuning)
	}
	if t, err = ReadKernelTuning(path); err == nil {
		err = t.Fits(info)
	}
	return t, path, err
}

// Fits reports why t was not measured on the device and driver of info, or
// nil when it was: another driver may run the kernels at other speeds.
func (t KernelTuning) Fits(info vk.DeviceInfo) error {
	switch {
	case t.VendorID != info.VendorID || t.DeviceID != info.DeviceID:
		return fmt.Errorf("measured on %s (%04x:%04x), not on %s (%04x:%04x)", t.Device, t.VendorID, t.DeviceID,
			info.Name, info.VendorID, info.DeviceID)
	case t.DriverVersion != info.DriverVersion:
		return fmt.Errorf("measured with driver version %#x (%s), not %#x: run u2net tune again", t.DriverVersion,
			t.Driver, info.DriverVersion)
	}
	return nil
}

// WriteKernelTuning writes t to path atomically (a temporary file renamed into
// place), making its folder if need be: a failed write leaves the file that
// was there.
func WriteKernelTuning(path string, t KernelTuning) error {
	data, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// SetKernels sets g's kernel choices to exactly choices ("name=value"), the
// others back to auto; on an error the choices are as they were.
func (g *GPU) SetKernels(choices []string) error {
	for _, c := range choices {
		if err := CheckKernel(c); err != nil {
			return fmt.Errorf("ops.SetKernels: %w", err)
		}
	}
	for _, c := range kernelChoices {
		if err := g.SetKernel(c.name + "=auto"); err != nil {
			return err
		}
	}
	for _, c := range choices {
		if err := g.SetKernel(c); err != nil {
			return err
		}
	}
	return nil
}

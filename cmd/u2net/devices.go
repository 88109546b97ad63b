package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/vk"
)

func init() {
	register(command{
		name:  "devices",
		short: "list the Vulkan devices and the CPU reference engine",
		run:   runDevices,
	})
}

// cpuEngineInfo describes the plain-Go reference engine in listings.
type cpuEngineInfo struct {
	Selector string `json:"selector"`
	Name     string `json:"name"`
	Threads  int    `json:"threads"`
	Arch     string `json:"arch"`
}

type devicesReport struct {
	Default string          `json:"default"`
	Devices []vk.DeviceInfo `json:"devices"`
	// Tunings are the devices' kernel tunings (u2net tune), in their order.
	Tunings     []deviceTuning `json:"kernel_tunings"`
	CPU         cpuEngineInfo  `json:"cpu_engine"`
	VulkanError string         `json:"vulkan_error,omitempty"`
}

// deviceTuning is what a device's tuning file holds, or why it is not
// applied (Status).
type deviceTuning struct {
	File    string    `json:"file,omitempty"`
	Status  string    `json:"status"` // "applied", "none", or why not
	Train   []string  `json:"train,omitempty"`
	Predict []string  `json:"predict,omitempty"`
	Tuned   time.Time `json:"measured,omitzero"`
	Program string    `json:"program,omitempty"`
}

// tuningOf reads the tuning file of the device of info in the cache folder.
func tuningOf(info vk.DeviceInfo) deviceTuning {
	t, path, err := ops.ReadDeviceTuning(vk.CacheDir(""), info)
	switch {
	case path == "":
		return deviceTuning{Status: "none: no cache folder"}
	case errors.Is(err, ops.ErrNoKernelTuning):
		return deviceTuning{File: path, Status: "none (u2net tune makes one)"}
	case err != nil:
		return deviceTuning{File: path, Status: "not applied: " + err.Error()}
	}
	return deviceTuning{File: path, Status: "applied", Train: t.Train, Predict: t.Predict, Tuned: t.Measured, Program: t.Program}
}

// String is the tuning in a few words.
func (t deviceTuning) String() string {
	if t.Status != "applied" {
		return t.Status
	}
	words := func(c []string) string { return cmp.Or(strings.Join(c, " "), "built-in rules") }
	return fmt.Sprintf("%s: train %s; predict %s", t.Tuned.Format(time.DateOnly), words(t.Train), words(t.Predict))
}

func runDevices(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("devices", "", stderr)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	rep := devicesReport{
		Devices: []vk.DeviceInfo{},
		Tunings: []deviceTuning{},
		CPU:     cpuEngineInfo{Selector: vk.CPUEngine, Name: "plain-Go reference engine", Threads: runtime.GOMAXPROCS(0), Arch: runtime.GOARCH},
	}
	devs, err := vk.Devices()
	if err != nil {
		rep.VulkanError = err.Error()
	} else {
		rep.Devices = devs
		for _, d := range devs {
			rep.Tunings = append(rep.Tunings, tuningOf(d))
		}
		if len(devs) == 0 {
			rep.VulkanError = vk.ErrNoDevice.Error()
		}
	}
	if c, err := vk.Choose(vk.SelectorFromEnv("")); err == nil {
		rep.Default = c.String()
	} else {
		rep.Default = "none: " + err.Error()
	}

	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printDeviceTable(stdout, rep)
	}
	if rep.VulkanError != "" && vk.RequireGPU() {
		return fmt.Errorf("U2NET_REQUIRE_GPU is set and %s", rep.VulkanError)
	}
	return nil
}

// printDeviceTable prints one column per device, the CPU engine last, and
// one row per property.
func printDeviceTable(w io.Writer, rep devicesReport) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	rows := [][]string{
		{"selector"}, {"name"}, {"type"}, {"vulkan api"}, {"driver"}, {"device memory"},
		{"subgroup size"}, {"shared memory"}, {"max buffer binding"}, {"max workgroups"},
		{"max workgroup size"}, {"timestamp period"}, {"cooperative matrix"}, {"float16"}, {"bfloat16"},
		{"kernel tuning"},
	}
	for i, d := range rep.Devices {
		driver := d.Driver
		if d.DriverInfo != "" {
			driver += " " + d.DriverInfo
		}
		ts := "none"
		if d.Timestamps {
			ts = fmt.Sprintf("%g ns", d.TimestampPeriod)
		}
		col := []string{
			fmt.Sprint(d.Index), d.Name, d.Type.String(), d.API, driver, bytesText(d.DeviceLocalBytes()),
			fmt.Sprint(d.SubgroupSize), bytesText(uint64(d.MaxSharedMemory)), bytesText(uint64(d.MaxStorageBufferRange)),
			fmt.Sprintf("%d×%d×%d", d.MaxWorkgroupCount[0], d.MaxWorkgroupCount[1], d.MaxWorkgroupCount[2]),
			fmt.Sprintf("%d×%d×%d (%d)", d.MaxWorkgroupSize[0], d.MaxWorkgroupSize[1], d.MaxWorkgroupSize[2], d.MaxWorkgroupInvocs),
			ts, yesNo(d.CooperativeMatrix), yesNo(d.Float16), yesNo(d.BFloat16), rep.Tunings[i].String(),
		}
		for i := range rows {
			rows[i] = append(rows[i], col[i])
		}
	}
	cpu := []string{rep.CPU.Selector, fmt.Sprintf("%s (%d threads)", rep.CPU.Name, rep.CPU.Threads), "reference", "-",
		fmt.Sprintf("Go %s", runtime.Version()), "host", "-", "-", "-", "-", "-", "-", "no", "no", "no", "-"}
	for i := range rows {
		rows[i] = append(rows[i], cpu[i])
	}
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t")+"\t")
	}
	tw.Flush()
	fmt.Fprintf(w, "\ndefault: %s\n", rep.Default)
	if rep.VulkanError != "" {
		fmt.Fprintf(w, "vulkan: %s\n", rep.VulkanError)
	}
	fmt.Fprintln(w, `choose with --device N|NAME|cpu or U2NET_DEVICE`)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func bytesText(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

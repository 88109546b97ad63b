package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"

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
	Default     string          `json:"default"`
	Devices     []vk.DeviceInfo `json:"devices"`
	CPU         cpuEngineInfo   `json:"cpu_engine"`
	VulkanError string          `json:"vulkan_error,omitempty"`
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
		CPU:     cpuEngineInfo{Selector: vk.CPUEngine, Name: "plain-Go reference engine", Threads: runtime.GOMAXPROCS(0), Arch: runtime.GOARCH},
	}
	devs, err := vk.Devices()
	if err != nil {
		rep.VulkanError = err.Error()
	} else {
		rep.Devices = devs
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
	}
	for _, d := range rep.Devices {
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
			ts, yesNo(d.CooperativeMatrix), yesNo(d.Float16), yesNo(d.BFloat16),
		}
		for i := range rows {
			rows[i] = append(rows[i], col[i])
		}
	}
	cpu := []string{rep.CPU.Selector, fmt.Sprintf("%s (%d threads)", rep.CPU.Name, rep.CPU.Threads), "reference", "-",
		fmt.Sprintf("Go %s", runtime.Version()), "host", "-", "-", "-", "-", "-", "-", "no", "no", "no"}
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

package vk

import "fmt"

// maxGridX is the smallest maxComputeWorkGroupCount[0] Vulkan allows, so a
// grid built with it runs on every device.
const maxGridX = 65535

// Grid1D returns workgroup counts that cover n items with workgroups of local
// items each, flattened onto x and y so that no axis exceeds 65535. The
// shader recovers the index as
// (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * local + lid
// and must ignore indices ≥ n.
func Grid1D(n, local int) [3]uint32 {
	groups := (n + local - 1) / local
	if groups < 1 {
		groups = 1
	}
	x := min(groups, maxGridX)
	y := (groups + x - 1) / x
	return [3]uint32{uint32(x), uint32(y), 1}
}

// Upload copies data into dst and waits (one batch of its own).
func (d *Device) Upload(dst *Buffer, data any) error {
	b := d.NewBatch()
	defer b.Release()
	b.Upload(dst, data)
	if err := b.Run(); err != nil {
		return fmt.Errorf("vk: upload: %w", err)
	}
	return nil
}

// Download copies the start of src into data and waits (one batch of its
// own).
func (d *Device) Download(data any, src *Buffer) error {
	b := d.NewBatch()
	defer b.Release()
	b.Download(data, src)
	if err := b.Run(); err != nil {
		return fmt.Errorf("vk: download: %w", err)
	}
	return nil
}

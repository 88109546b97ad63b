// Package ref is the CPU reference of every operation of the 3D U²-Net: the
// forward pass and the backward pass to every input and parameter of each
// convolution, normalisation, activation, shape operation, loss and
// optimiser step that the model uses.
//
// It is the ground truth that the Vulkan kernels are tested against, so it
// is written as direct loops that follow the definitions, accumulating in
// float64. Speed is not a goal. The semantics are PyTorch's (Conv3d,
// ConvTranspose3d, InstanceNorm3d, LeakyReLU, nearest Upsample, F.pad,
// CrossEntropyLoss, Adam, SGD); where this package differs from PyTorch's
// definition, this package is wrong.
//
// # Layout
//
// Tensors are float32 slices in NCDHW layout, C order (W varies fastest).
// Spatial sizes, strides, kernels and paddings are [Dims3] values in the
// order D, H, W. Convolution weights follow PyTorch: [Cout, Cin/groups, kd,
// kh, kw] for convolutions and [Cin, Cout, kd, kh, kw] for transposed
// convolutions. Class labels are int32 class indices in [0, classes).
//
// # Parameters and errors
//
// Each family of operations has a parameter struct (for example
// [ConvParams]) whose Validate method checks the sizes and whose Len methods
// give the number of elements of every tensor. GPU implementations use the
// same structs so that both paths accept exactly the same shapes. The Len and
// OutputSize methods are meaningful once Validate has returned nil. Functions
// never panic on user input: a size that is zero, negative or too large, a
// product of sizes that overflows int, or a slice whose length does not match
// the parameters gives an error that names the operation and the shapes.
//
// # Buffers
//
// The caller owns every slice. Functions read their inputs and write every
// element of their outputs; they keep no reference to any slice after they
// return and allocate only scratch space. Outputs must not overlap inputs
// unless a function says otherwise. Backward functions overwrite their
// gradient outputs rather than add to them. A gradient output may be nil
// when that gradient is not wanted; an optional input (a bias, a residual)
// may be nil when it is absent.
package ref

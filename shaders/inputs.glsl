// INPUT(b, name) declares binding b as a read-only float tensor and two
// functions that read it: name(i), the float at i, and name4(i), the vec4
// at i (floats 4i..4i+3). With TEXEL the binding is a uniform texel buffer,
// which the host binds with texels of four floats when the kernel reads
// vec4s and of one float when it reads floats (a binding is read one way);
// otherwise it is a storage buffer.
#ifdef TEXEL
#define INPUT(b, name) \
    layout(binding = b) uniform samplerBuffer name##Texels; \
    float name(uint i) { return texelFetch(name##Texels, int(i)).x; } \
    vec4 name##4(uint i) { return texelFetch(name##Texels, int(i)); }
#else
#define INPUT(b, name) \
    layout(std430, binding = b) readonly buffer name##Floats { float name##F[]; }; \
    layout(std430, binding = b) readonly buffer name##Vec4s { vec4 name##V[]; }; \
    float name(uint i) { return name##F[i]; } \
    vec4 name##4(uint i) { return name##V[i]; }
#endif

# Build, test and shader targets. "make test" is what CI runs.
GLSLC ?= glslc
GLSLFLAGS = --target-env=vulkan1.1 -O -Werror
SHADER_SRC = $(wildcard shaders/*.comp)
SHADER_INC = $(wildcard shaders/*.glsl)
# Families that read their inputs through inputs.glsl also get a variant
# compiled with -DTEXEL, whose inputs are texel buffers (CPU devices).
TEXEL_SRC = $(shell grep -l '^#include "inputs.glsl"' $(SHADER_SRC))
SHADER_SPV = $(SHADER_SRC:.comp=.spv) $(TEXEL_SRC:.comp=.texel.spv)
GO_TEST_FLAGS ?= -timeout 20m

.PHONY: all build shaders check-shaders fmt-check vet test test-go test-cgocheck demo devices clean

all: build

build:
	go build ./...

shaders: $(SHADER_SPV)

shaders/%.spv: shaders/%.comp $(SHADER_INC)
	$(GLSLC) $(GLSLFLAGS) -o $@ $<

shaders/%.texel.spv: shaders/%.comp $(SHADER_INC)
	$(GLSLC) $(GLSLFLAGS) -DTEXEL -o $@ $<

# Recompile every shader into a temporary folder and compare with the
# committed .spv; spirv-val must accept each module.
check-shaders:
	@tmp=$$(mktemp -d); status=0; \
	for src in $(SHADER_SRC); do \
		name=$$(basename $$src .comp); \
		variants=".spv"; grep -q '^#include "inputs.glsl"' $$src && variants=".spv .texel.spv"; \
		for v in $$variants; do \
			flags=""; [ $$v = .texel.spv ] && flags=-DTEXEL; \
			$(GLSLC) $(GLSLFLAGS) $$flags -o $$tmp/$$name$$v $$src || { status=1; continue; }; \
			if ! cmp -s $$tmp/$$name$$v shaders/$$name$$v; then \
				echo "shaders/$$name$$v does not match shaders/$$name.comp: run make shaders"; status=1; fi; \
			spirv-val --target-env vulkan1.1 shaders/$$name$$v || status=1; \
		done; \
	done; \
	for spv in shaders/*.spv; do \
		src=$${spv%.spv}; src=$${src%.texel}.comp; \
		[ -f "$$src" ] || { echo "$$spv has no source"; status=1; }; \
		case $$spv in *.texel.spv) grep -q '^#include "inputs.glsl"' $$src || { echo "$$spv: $$src has no texel variant"; status=1; };; esac; \
	done; \
	rm -rf $$tmp; exit $$status

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	go vet ./...

# The Vulkan tests run on whatever device the loader finds (lavapipe in CI)
# under the validation layer; a missing device fails instead of skipping.
test-go:
	U2NET_REQUIRE_GPU=1 U2NET_VK_VALIDATE=1 go test $(GO_TEST_FLAGS) ./...

# The packages that call into C run again with the runtime checking every
# pointer that crosses into C memory (vulkan-go's generated code stores Go
# pointers in C structs; calls that do are made through vk/shim.c instead).
test-cgocheck:
	GOEXPERIMENT=cgocheck2 U2NET_REQUIRE_GPU=1 U2NET_VK_VALIDATE=1 go test $(GO_TEST_FLAGS) ./vk ./ops

test: fmt-check vet check-shaders test-go test-cgocheck

devices:
	go run ./cmd/u2net devices

# The main job on its embedded default: synthetic domains, training,
# prediction and evaluation into demo/.
demo:
	go run ./cmd/u2net demo --out demo

clean:
	go clean ./...

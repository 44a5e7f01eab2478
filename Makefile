# MDSA: multi-domain small-language-model orchestration.
# `make setup && make run` for the demo, `make test` for the tests.

GO        ?= go
BIN       := bin/mdsa
PLUGINS   := finance medical support technical
WASMS     := $(foreach p,$(PLUGINS),plugins/$(p)/$(p).wasm)
MODEL     ?= models/qwen2.5-0.5b-instruct-q4_k_m.gguf
SYNTH     := models/synthetic.gguf
# llama.cpp build that `make setup` installs: auto (CUDA, Vulkan or CPU, whichever fits), cpu, cuda, vulkan
LLAMA_BACKEND ?= auto

.PHONY: all setup setup-servers setup-vulkan setup-examples examples plugins hostile build test test-short run bench clean chart

all: build plugins

## setup: download Go modules, the llama.cpp runtime libraries and the console's chart library (project-local, no root; LLAMA_BACKEND=auto|cpu|cuda|vulkan)
setup:
	$(GO) mod download
	LLAMA_BACKEND=$(LLAMA_BACKEND) ./scripts/setup-llama.sh .deps/llama
	./scripts/setup-console.sh

## setup-servers: install the real servers the integration tests start on loopback (apt: redis-server); without them those tests skip
setup-servers:
	./scripts/setup-servers.sh

## setup-vulkan: the Vulkan build of llama.cpp in .deps/llama-vulkan, which with Mesa's software Vulkan device (setup-servers) runs the GPU offload test without a GPU (x86-64)
setup-vulkan:
	LLAMA_BACKEND=vulkan ./scripts/setup-llama.sh .deps/llama-vulkan

## setup-examples: install the toolchains of the AssemblyScript, C and Rust SDKs (npm into sdk/assemblyscript, apt: clang lld rustc)
setup-examples:
	sdk/assemblyscript/setup.sh
	sdk/c/setup.sh
	sdk/rust/setup.sh

## examples: build the example plugins in other languages (legal: AssemblyScript, travel: C, hr: Rust)
examples:
	examples/plugins/legal/build.sh
	examples/plugins/travel/build.sh
	examples/plugins/hr/build.sh

## plugins: build the four domain plugins to WebAssembly
plugins: $(WASMS)

plugins/%.wasm: $(shell find plugins sdk -name '*.go' 2>/dev/null) go.mod
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -ldflags=-s -o $@ ./$(dir $@)

## hostile: the misbehaving test plugin mdsa bench hostile attacks with (bin/hostile.wasm)
hostile:
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -ldflags=-s -o bin/hostile.wasm ./host/plugin/testdata/bad

## build: the mdsa CLI
build:
	$(GO) build -o $(BIN) ./cmd/mdsa

## test: gofmt, vet, race-enabled tests of every package, then the routing-quality, noisy-neighbour and hostile-suite tests (too slow under -race)
# go test shows skipped tests only with -v: say it once when llama.cpp is missing.
LLAMA_NOTE = @[ -f .deps/llama/libllama.so ] || [ -n "$$MDSA_LLAMA_LIB" ] || \
	echo "NOTE: the llama.cpp libraries are not installed (run make setup): every test that runs llama.cpp will be skipped"

# ARTIFACTS keeps what tests leave to look at (the console's screenshots, under _artifacts/).
ARTIFACTS ?= $(CURDIR)/.artifacts

# GOFMT_CHECK fails when a tracked Go file is not gofmt-formatted.
GOFMT_CHECK = @unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null)); \
	if [ -n "$$unformatted" ]; then echo "gofmt -w these files:"; echo "$$unformatted"; exit 1; fi

test:
	$(LLAMA_NOTE)
	$(GOFMT_CHECK)
	$(GO) vet ./...
	@mkdir -p $(ARTIFACTS)
	$(GO) test -race -count=1 -timeout 25m -artifacts -outputdir $(ARTIFACTS) ./...
	$(GO) test -count=1 -run 'CLINC150|SyntheticScale' -v ./internal/routerbench
	$(GO) test -count=1 -run 'NoisyNeighbour' -v ./host/server
	$(GO) test -count=1 -run 'HostileSuite' -v ./cmd/mdsa

## test-short: the edit-test loop (under a minute here): no race detector, slow measurements skipped; make test is the gate
test-short:
	$(LLAMA_NOTE)
	$(GOFMT_CHECK)
	$(GO) test -short -count=1 ./...

## run: answer four demo queries, one per domain plugin
run: build plugins
	@if [ -f "$(MODEL)" ]; then \
		echo "Using model $(MODEL)"; model="$(MODEL)"; \
	else \
		echo "NOTE: $(MODEL) is not here (download it: bin/mdsa models pull qwen2.5-0.5b-instruct)."; \
		echo "NOTE: using a tiny SYNTHETIC model instead: its answers are fixed, meaningless text."; \
		[ -f "$(SYNTH)" ] || $(BIN) models synth $(SYNTH); model="$(SYNTH)"; \
	fi; \
	for q in "What is a good way to diversify my retirement portfolio?" \
	         "I have had a headache and a mild fever for two days, what should I do?" \
	         "I was charged twice for my order, can I get a refund?" \
	         "How do I fix a segmentation fault in my C program?"; do \
		echo; echo "> $$q"; $(BIN) ask --model-file "$$model" "$$q" || exit 1; \
	done

## bench: plugin overhead per request, pipeline vs direct tokens/s, routing, generation
bench:
	$(GO) test -run '^$$' -bench 'PluginOverhead/compiler' -benchtime 2000x ./host
	$(GO) test -run '^$$' -bench 'Throughput' -benchtime 10x ./host
	$(GO) test -run '^$$' -bench . ./host/router
	$(GO) test -run '^$$' -bench 'Generate' -benchtime 20x ./host/engine/llamacpp

clean:
	rm -rf bin .cache $(WASMS)

## chart: lint the Helm chart (deploy/helm/mdsa) with helm v4.3.2 (go run, pinned) and validate the mdsa.toml it renders, plain and with Redis and a plugin registry
HELM := $(GO) run helm.sh/helm/v4/cmd/helm@v4.3.2
CHART_SET := --set redis.url=redis://redis:6379/0 --set redis.limitsFail=closed --set 'pluginRegistry.refs={oci://registry:5000/mdsa/finance:stable}'
chart: build
	$(HELM) lint --strict deploy/helm/mdsa
	$(HELM) lint --strict deploy/helm/mdsa $(CHART_SET)
	@mkdir -p bin
	$(HELM) template mdsa deploy/helm/mdsa > bin/chart-plain.yaml
	$(HELM) template mdsa deploy/helm/mdsa $(CHART_SET) > bin/chart-shared.yaml
	for f in plain shared; do \
		awk '/^  mdsa.toml: [|]/{f=1;next} f&&/^    /{sub(/^    /,"");print;next} f&&/^$$/{print;next} f{exit}' bin/chart-$$f.yaml > bin/chart-$$f.toml; \
		$(BIN) config validate bin/chart-$$f.toml || exit 1; \
	done
	grep -q 'limits = "redis"' bin/chart-shared.toml
	@echo "chart: lint passed, rendered configs valid"


#!/usr/bin/env bash
# `make bench`: lostd side by side with ONNX Runtime and PyTorch, the daemon
# under load and eval throughput; see bench/run.sh (setup in README,
# "Performance"). Figures only; nothing is asserted.
exec bash "$(dirname "$0")/../bench/run.sh" "$@"

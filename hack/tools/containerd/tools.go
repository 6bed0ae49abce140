//go:build tools

// Package tools records the containerd v2 binaries node-b of the test bed's cluster runs, so `go mod tidy`
// keeps them. A module of its own, so containerd's dependency graph never meets Kubernetes'.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)

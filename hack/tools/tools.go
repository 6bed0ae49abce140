//go:build tools

// Package tools records the binaries the test bed builds, so `go mod tidy` keeps them.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)

//go:build !linux

package stack

import "os/exec"

func setDeathSignal(*exec.Cmd) {}

package stack

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill a child when ferryctl dies, so a
// killed dev stack leaves nothing running.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

package hostagent

import (
	"fmt"
	"os"
	"strings"

	"github.com/ember-run/ember/internal/sysmon"
)

// setSysmonSlack sets the timer slack, in ns, of the sysmon thread of the
// ember-init whose host pid is pid (sysmon.Slack: why). It needs
// CAP_SYS_NICE over the instance's user namespace (the agent runs as
// root); ember-init, without it, cannot.
func setSysmonSlack(pid, ns int) error {
	if pid <= 0 {
		return nil
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return err
	}
	if name := strings.TrimSpace(string(comm)); name != "ember-init" {
		return fmt.Errorf("pid %d is %q, not ember-init", pid, name)
	}
	if err := sysmon.SetSlack(pid, ns); err != nil {
		return fmt.Errorf("ember-init: %w", err)
	}
	return nil
}

// Package sysmon finds the Go runtime's monitor thread (sysmon) of another
// Go process and sets its timer slack: the agent gives every ember-init's
// sysmon Slack, and the stage budget's relay floor gives its relays the
// same, to be comparable.
package sysmon

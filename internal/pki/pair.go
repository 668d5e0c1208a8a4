package pki

import (
	"crypto/tls"
	"crypto/x509"
)

// Pair is a fresh in-memory authority with an emberd certificate and one
// agent's certificate: what tests of either side need.
type Pair struct {
	CA     *Authority
	Emberd tls.Certificate
	Agent  tls.Certificate
}

// NewPair makes a Pair for agent agentID.
func NewPair(agentID string) (*Pair, error) {
	ca, err := NewAuthority()
	if err != nil {
		return nil, err
	}
	e, err := ca.Issue(RoleEmberd, RoleEmberd, "127.0.0.1")
	if err != nil {
		return nil, err
	}
	a, err := ca.Issue(RoleAgent, agentID, "127.0.0.1")
	if err != nil {
		return nil, err
	}
	return &Pair{CA: ca, Emberd: e, Agent: a}, nil
}

// Roots is the authority as a trust root.
func (p *Pair) Roots() *x509.CertPool { return p.CA.Pool() }

// AgentServer is the agent's dispatch server configuration.
func (p *Pair) AgentServer() *tls.Config { return ServerConfig(p.Agent, p.Roots(), RoleEmberd) }

// EmberdClient is emberd's configuration for dialling the agent.
func (p *Pair) EmberdClient() *tls.Config {
	return ClientConfig(p.Emberd, p.Roots(), RoleAgent, p.Agent.Leaf.Subject.CommonName)
}

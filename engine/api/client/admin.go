package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/ember-run/ember/engine/api/wire"
)

// sendJSON sends in as a JSON body and decodes the answer into out.
func (c *Client) sendJSON(ctx context.Context, method, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return c.do(ctx, method, path, nil, bytes.NewReader(body), "application/json", out)
}

// Whoami reports who the client's key belongs to.
func (c *Client) Whoami(ctx context.Context) (wire.Whoami, error) {
	var out wire.Whoami
	return out, c.do(ctx, http.MethodGet, "/v1/whoami", nil, nil, "", &out)
}

// CreateTenant creates a tenant (administrator) and returns its first key.
func (c *Client) CreateTenant(ctx context.Context, name string) (wire.TenantKey, error) {
	var out wire.TenantKey
	return out, c.sendJSON(ctx, http.MethodPost, "/v1/tenants", wire.CreateTenant{Name: name}, &out)
}

// ListTenants lists every tenant (administrator).
func (c *Client) ListTenants(ctx context.Context) ([]wire.Tenant, error) {
	var out wire.Tenants
	return out.Tenants, c.do(ctx, http.MethodGet, "/v1/tenants", nil, nil, "", &out)
}

func tenantKeysPath(name string) string { return "/v1/tenants/" + url.PathEscape(name) + "/keys" }

// RotateKey issues a new key for a tenant and revokes its older keys
// (administrator).
func (c *Client) RotateKey(ctx context.Context, name string) (wire.TenantKey, error) {
	var out wire.TenantKey
	return out, c.do(ctx, http.MethodPost, tenantKeysPath(name), nil, nil, "", &out)
}

// RevokeKeys revokes every key of a tenant (administrator).
func (c *Client) RevokeKeys(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, tenantKeysPath(name), nil, nil, "", nil)
}

// CreateTopic creates a topic in the tenant's namespace.
func (c *Client) CreateTopic(ctx context.Context, name string, partitions int) (wire.Topic, error) {
	var out wire.Topic
	return out, c.sendJSON(ctx, http.MethodPost, "/v1/topics", wire.CreateTopic{Name: name, Partitions: partitions}, &out)
}

// ListTopics lists the topics the tenant owns or was granted (every topic
// for the administrator).
func (c *Client) ListTopics(ctx context.Context) ([]wire.Topic, error) {
	var out wire.Topics
	return out.Topics, c.do(ctx, http.MethodGet, "/v1/topics", nil, nil, "", &out)
}

// DeleteTopic deletes one of the tenant's topics (missing is success).
func (c *Client) DeleteTopic(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/topics/"+url.PathEscape(name), nil, nil, "", nil)
}

func grantPath(topic, tenant string) string {
	return "/v1/topics/" + url.PathEscape(topic) + "/grants/" + url.PathEscape(tenant)
}

// Grant lets a tenant consume, produce to, or both ("all"), a topic
// (administrator).
func (c *Client) Grant(ctx context.Context, topic, tenant, access string) error {
	return c.sendJSON(ctx, http.MethodPut, grantPath(topic, tenant), wire.Grant{Access: access}, nil)
}

// Ungrant withdraws a tenant's grant on a topic (administrator).
func (c *Client) Ungrant(ctx context.Context, topic, tenant string) error {
	return c.do(ctx, http.MethodDelete, grantPath(topic, tenant), nil, nil, "", nil)
}

func subPoolPath(name string) string { return "/v1/subpools/" + url.PathEscape(name) }

// PutSubPool creates or replaces a sub-pool (administrator).
func (c *Client) PutSubPool(ctx context.Context, p wire.SubPool) (wire.SubPool, error) {
	var out wire.SubPool
	return out, c.sendJSON(ctx, http.MethodPut, subPoolPath(p.Name), p, &out)
}

// ListSubPools lists sub-pools: all for the administrator, a tenant's own.
func (c *Client) ListSubPools(ctx context.Context) ([]wire.SubPool, error) {
	var out wire.SubPools
	return out.SubPools, c.do(ctx, http.MethodGet, "/v1/subpools", nil, nil, "", &out)
}

// DeleteSubPool deletes a sub-pool (administrator); its instances are
// retired as they idle.
func (c *Client) DeleteSubPool(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, subPoolPath(name), nil, nil, "", nil)
}

func logServicePath(name string) string { return "/v1/logging/" + url.PathEscape(name) }

// PutLogService creates or replaces one of the tenant's logging services.
func (c *Client) PutLogService(ctx context.Context, s wire.LogService) (wire.LogService, error) {
	var out wire.LogService
	return out, c.sendJSON(ctx, http.MethodPut, logServicePath(s.Name), s, &out)
}

// ListLogServices lists the tenant's logging services (without credentials).
func (c *Client) ListLogServices(ctx context.Context) ([]wire.LogService, error) {
	var out wire.LogServices
	return out.LogServices, c.do(ctx, http.MethodGet, "/v1/logging", nil, nil, "", &out)
}

// DeleteLogService deletes one of the tenant's logging services.
func (c *Client) DeleteLogService(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, logServicePath(name), nil, nil, "", nil)
}

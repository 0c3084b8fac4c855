package client

import (
	"context"
	"net/http"

	"github.com/openslicer/openslicer/api"
)

// ListSecrets returns the metadata of every stored secret, never the
// values (GET /secrets).
func (c *Client) ListSecrets(ctx context.Context) ([]api.Secret, error) {
	var secrets []api.Secret
	if err := c.call(ctx, http.MethodGet, nil, nil, &secrets, "secrets"); err != nil {
		return nil, err
	}
	return secrets, nil
}

// CreateSecret stores a new secret (POST /secrets). req.Data is the value,
// base64-encoded. An existing name is an error matching api.ErrAlreadyExists.
func (c *Client) CreateSecret(ctx context.Context, req api.CreateSecretRequest) error {
	return c.call(ctx, http.MethodPost, nil, req, nil, "secrets")
}

// PatchSecret changes the fields of req that are set (PATCH
// /secrets/{name}). req.Data, when set, is base64.
func (c *Client) PatchSecret(ctx context.Context, name string, req api.UpdateSecretRequest) error {
	return c.call(ctx, http.MethodPatch, nil, req, nil, "secrets", name)
}

// DeleteSecret removes a secret (DELETE /secrets/{name}).
func (c *Client) DeleteSecret(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, nil, nil, nil, "secrets", name)
}

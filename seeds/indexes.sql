-- Spillway demo dataset: secondary indexes that export filters need. Idempotent.
-- Filters are combined with a keyset range on id, hence the (column, id) pairs.
-- One statement per line: the seeder drops and rebuilds these around a bulk load.
CREATE INDEX IF NOT EXISTS products_category_id_idx ON products (category, id);
CREATE INDEX IF NOT EXISTS products_status_id_idx ON products (status, id);
CREATE INDEX IF NOT EXISTS products_tenant_id_id_idx ON products (tenant_id, id);
CREATE INDEX IF NOT EXISTS products_created_at_idx ON products (created_at);
CREATE INDEX IF NOT EXISTS products_price_idx ON products (price);
-- shop.orders: code is the key of dataset orders_by_code, hence unique; tenant_id is its scope.
CREATE UNIQUE INDEX IF NOT EXISTS orders_code_key ON shop.orders (code);
CREATE INDEX IF NOT EXISTS orders_tenant_id_idx ON shop.orders (tenant_id);

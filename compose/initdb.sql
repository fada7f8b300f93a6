-- One database per context (the order context's first shard), as each owns its data.
CREATE DATABASE IF NOT EXISTS ordermesh_catalog CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE IF NOT EXISTS ordermesh_order_0 CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE IF NOT EXISTS ordermesh_payment CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE IF NOT EXISTS ordermesh_shipping CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE IF NOT EXISTS ordermesh_analytics CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

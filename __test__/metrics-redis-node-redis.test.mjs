// metrics-redis.test.mjs with a node-redis client (the `redis` package).
process.env.NATIVE_SSE_TEST_REDIS_CLIENT = 'node-redis'
await import('./metrics-redis.test.mjs')

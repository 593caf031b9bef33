// defects-redis.test.mjs with a node-redis client (the `redis` package)
// for the channels, in this process and in the fixtures it starts.
process.env.NATIVE_SSE_TEST_REDIS_CLIENT = 'node-redis'
await import('./defects-redis.test.mjs')

// redis-flush-window.test.mjs with node-redis clients (the `redis` package).
process.env.NATIVE_SSE_TEST_REDIS_CLIENT = 'node-redis'
await import('./redis-flush-window.test.mjs')

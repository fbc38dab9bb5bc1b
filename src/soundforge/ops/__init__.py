"""The operations wing: what running soundforge for a team needs around each call: prices and costs (`pricing`),
spending limits (`budget`), the result cache (`cache`), callbacks and tracing (`observe`), provider health
(`health`)."""

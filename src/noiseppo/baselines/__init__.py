"""What Noise PPO is compared with: best-of-N, noise search, DDPO (Shapes and diffusers), and the comparison."""

import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { BrowserRouter } from 'react-router-dom';
import App from './App.jsx';
import { BACKEND_URL } from './config.js';
import './styles.css';
import { initTracing } from './tracing.js';

// Before the first fetch, so every API call is traced and carries `traceparent`.
initTracing(BACKEND_URL);

createRoot(document.getElementById('root')).render(
  <StrictMode>
    <BrowserRouter>
      <App />
    </BrowserRouter>
  </StrictMode>,
);
